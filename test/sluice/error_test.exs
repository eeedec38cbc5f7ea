defmodule Sluice.ErrorTest do
  @moduledoc """
  Sluice.Error's vocabulary in step with the protocol crate's, without starting any OS
  process: every stage the helper program may send is decoded to its own atom, is in
  `Sluice.Error.stage()` and is documented.
  """
  use ExUnit.Case, async: true

  alias Sluice.Control.Protocol

  # Stages the BEAM side names itself (it receives the program's fds).
  @beam_stages [:handoff]

  defp wire_stages do
    source = File.read!("native/sluice_protocol/src/stage.rs")
    names = Regex.scan(~r/Stage::\w+ => "([a-z]+)"/, source, capture: :all_but_first)
    stages = names |> List.flatten() |> Enum.map(&String.to_atom/1)
    assert length(stages) >= 18
    stages
  end

  defp typed_stages do
    {:ok, types} = Code.Typespec.fetch_types(Sluice.Error)
    [union] = for {:type, {:stage, {:type, _, :union, atoms}, []}} <- types, do: atoms
    for {:atom, _, stage} <- union, do: stage
  end

  test "every stage of the protocol crate decodes to itself and is in Sluice.Error.stage()" do
    for stage <- wire_stages() do
      reply = :erlang.term_to_binary({:spawn_error, 1, "EINVAL", Atom.to_string(stage), "x"})

      assert {:spawn_error, 1, %Sluice.Error{stage: ^stage, reason: :einval}} =
               Protocol.decode(reply)
    end

    assert Enum.sort(typed_stages()) == Enum.sort(wire_stages() ++ @beam_stages)
  end

  test "the moduledoc names every stage" do
    {:docs_v1, _, _, _, %{"en" => moduledoc}, _, _} = Code.fetch_docs(Sluice.Error)
    [_, stages_section] = String.split(moduledoc, "## `:stage`")

    for stage <- typed_stages() do
      assert stages_section =~ "`#{inspect(stage)}`", "#{inspect(stage)} is not documented"
    end
  end
end
