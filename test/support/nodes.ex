defmodule Sluice.Nodes do
  @moduledoc """
  Real second nodes for the tests of `node:`: this VM is made distributed on loopback
  (epmd started outside any helper program's tree) and peers are started with `:peer`,
  controlled over their standard I/O (so a `Node.disconnect/1` does not end them), with
  this project's code paths and, unless told otherwise, the `:sluice` application.
  """
  import ExUnit.Assertions

  @doc "Makes this VM a distributed node on 127.0.0.1 (once); returns whether it started it."
  @spec distribute!() :: boolean
  def distribute! do
    if Node.alive?() do
      false
    else
      {_, 0} = System.cmd("epmd", ["-daemon"])
      Application.put_env(:kernel, :inet_dist_use_interface, {127, 0, 0, 1})
      # A test disconnects one peer: the others stay connected (no partition healing).
      Application.put_env(:kernel, :prevent_overlapping_partitions, false)
      name = :"sluice_test_#{System.unique_integer([:positive])}@127.0.0.1"
      {:ok, _} = Node.start(name, :longnames)
      true
    end
  end

  @doc "Starts a peer node (with `:sluice` running unless `sluice: false`): `{peer, node}`."
  @spec start_peer!(String.t(), keyword) :: {pid, node}
  def start_peer!(prefix, opts \\ []) do
    cookie = Atom.to_charlist(Node.get_cookie())

    {:ok, peer, node} =
      :peer.start(%{
        name: :"#{prefix}_#{System.unique_integer([:positive])}",
        host: ~c"127.0.0.1",
        longnames: true,
        connection: :standard_io,
        args: [
          ~c"-setcookie",
          cookie,
          ~c"-kernel",
          ~c"inet_dist_use_interface",
          ~c"{127,0,0,1}",
          ~c"-kernel",
          ~c"prevent_overlapping_partitions",
          ~c"false"
        ]
      })

    :ok = :peer.call(peer, :code, :add_pathsa, [:code.get_path()])

    if Keyword.get(opts, :sluice, true) do
      {:ok, _} = :peer.call(peer, Application, :ensure_all_started, [:sluice], 30_000)
    end

    true = Node.connect(node)
    {peer, node}
  end

  @doc """
  Run on a peer (`Node.spawn/4`): keeps the messages it receives until
  `{:report, to}`, then sends them to `to` as `{:kept, messages}` (oldest first). Bounded:
  it ends after a minute whatever happens.
  """
  @spec keep([term]) :: :ok
  def keep(kept \\ []) do
    receive do
      {:report, to} ->
        send(to, {:kept, Enum.reverse(kept)})
        :ok

      message ->
        keep([message | kept])
    after
      60_000 -> :ok
    end
  end

  @doc "The helper program's children on `node` (its programs), through the peer."
  @spec helper_children(pid) :: [pos_integer]
  def helper_children(peer) do
    helper = :peer.call(peer, Sluice.Helper, :info, []).os_pid
    Sluice.OsProbe.children(helper)
  end

  @doc "Asserts that the peer's helper program has no children left (waiting briefly)."
  @spec assert_peer_clean(pid) :: :ok
  def assert_peer_clean(peer) do
    clean = Sluice.OsProbe.eventually(fn -> helper_children(peer) == [] end, 7_000)
    assert clean, "processes left behind on the peer: #{inspect(helper_children(peer))}"
    :ok
  end
end
