defmodule Sluice.ErlangDocsTest do
  # The docs chunk of the Erlang module `sluice` (mix/tasks/compile.sluice_erlang_docs.ex),
  # as an Erlang user meets it: a plain erl with only Sluice's ebin on its path.
  use ExUnit.Case, async: true

  defp erl!(expressions) do
    ebin = Path.join(:code.lib_dir(:sluice), "ebin")
    {out, 0} = System.cmd("erl", ["-noshell", "-pa", ebin, "-eval", expressions <> ", halt()."])
    out
  end

  test "code:get_doc(sluice) documents the module and every exported function" do
    out =
      erl!(~S"""
      {ok, {docs_v1, _, erlang, Format, #{<<"en">> := _}, _, Docs}} = code:get_doc(sluice),
      Exports = [{function, N, A} || {N, A} <- sluice:module_info(exports), N =/= module_info],
      Documented = [K || {K, _, _, #{<<"en">> := [_ | _]}, _} <- Docs],
      io:format("format ~s~nundocumented ~p~nlisted ~p~n",
                [Format, Exports -- Documented, [K || {K, _, _, _, _} <- Docs] -- Exports])
      """)

    assert out =~ "format application/erlang+html"
    assert out =~ "undocumented []"
    # Types, but no unexported function.
    [listed] = Regex.run(~r/listed (.*)/s, out, capture: :all_but_first)
    refute listed =~ "function"
  end

  test "h(sluice) and h(sluice, run) show the edoc text in the shell" do
    out = erl!("c:h(sluice), c:h(sluice, run), c:ht(sluice, argv)")
    assert out =~ "Run external OS programs from Erlang, safely and fast."
    assert out =~ "-spec run(Argv :: command()) -> {ok, result()} | {error, error_map()}."
    assert out =~ "Runs Argv (or a pipeline/1) to completion and collects its"
    # A type's edoc comment follows it (one before it would document the type above).
    assert out =~ ~r/-type argv\(\) :: .*\n\n  A program and its arguments/s
  end
end
