defmodule Sluice.DocsExamples do
  @moduledoc false
  # The ```elixir blocks of README.md and docs/*.md, and what running one takes.

  @doc "`{line, code}` of every ```elixir block of `markdown` (line: the block's first)."
  @spec blocks(String.t()) :: [{pos_integer, String.t()}]
  def blocks(markdown) do
    markdown
    |> String.split("\n")
    |> Enum.with_index(1)
    |> Enum.reduce({nil, []}, fn
      {"```elixir", n}, {nil, acc} ->
        {{n + 1, []}, acc}

      {"```", _}, {{first, lines}, acc} ->
        {nil, [{first, lines |> Enum.reverse() |> Enum.join("\n")} | acc]}

      {line, _}, {{first, lines}, acc} ->
        {{first, [line | lines]}, acc}

      _, state ->
        state
    end)
    |> elem(1)
    |> Enum.reverse()
  end

  @doc """
  What an expression's value says about the example, for a statement that is not a match
  (a match checks itself): an error, a non-zero exit or a stream that ended with one is a
  broken example.
  """
  @spec broken?(term) :: boolean
  def broken?({:error, _}), do: true
  def broken?({:ok, %Sluice.Result{status: status}}), do: status != 0
  def broken?(%Sluice.Result{status: status}), do: status != 0
  def broken?([_ | _] = list), do: match?({:exit, status} when status != 0, List.last(list))
  def broken?(_), do: false

  @doc "Reads a terminal until the prompt `>>> ` ends what it wrote (README's \"Terminals\")."
  @spec read_until_prompt(pid, String.t()) :: String.t()
  def read_until_prompt(p, acc \\ "") do
    if String.ends_with?(acc, ">>> ") do
      acc
    else
      {:ok, data} = Sluice.Process.read(p, 65_536, 5_000)
      read_until_prompt(p, acc <> data)
    end
  end
end

defmodule Sluice.DocsExamplesTest do
  # Every ```elixir block of README.md and docs/*.md runs here, as written, each in a
  # fresh process (its programs die with it) and a fresh directory that holds what the
  # examples name (their input files, a Makefile, a git repository, examples/). A match
  # checks itself; any other top-level expression must not return an error, a non-zero
  # exit or a stream that ended with one (Sluice.DocsExamples.broken?/1). A block breaks
  # its test, so a README example that no longer works fails here.
  #
  # Placeholders made real, and nothing else changed in the code:
  #
  #   * programs not on a test machine are stubs on PATH (@stubs): journalctl, redis-server,
  #     nvidia-smi, pg_dump, aws, daemon-check, java, and /opt/server/bin/shutdown;
  #   * absolute paths (/backups/, /src, /data/) are moved into the block's directory;
  #   * :"gpu1@10.0.0.7" is a peer node on loopback (Sluice.Nodes), in the same directory;
  #   * `user: 1001` is a user created for this test (Sluice.TestUser);
  #   * the bindings `os_pid` (a `sleep` Sluice did not start) and `user_input`, and the
  #     function `read_until_prompt/1` (imported), are given to the blocks that use them.
  #
  # Blocks that cannot run as written are listed in @not_run with the reason; they are
  # still parsed, and evaluated as far as they can be.
  use Sluice.Case, async: false

  alias Sluice.{DocsExamples, Nodes}

  @moduletag :temp_dir
  @moduletag :capture_log
  @moduletag timeout: 180_000

  @root Path.expand("../..", __DIR__)
  @docs [
    "README.md"
    | Path.wildcard(Path.join(@root, "docs/*.md"))
      |> Enum.map(&Path.relative_to(&1, @root))
      |> Enum.sort()
  ]
  for doc <- @docs, do: @external_resource(Path.join(@root, doc))

  @blocks for doc <- @docs,
              {line, code} <- DocsExamples.blocks(File.read!(Path.join(@root, doc))),
              do: {doc, line, code}

  # A block's key is a piece of its text. Blocks that cannot run as written: they must
  # still parse (and config files evaluate with Config.Reader, checked by Sluice's own
  # check of its configuration).
  @not_run %{
    "config :sluice, cgroup: false" =>
      {:config, "a config file: evaluated by Config.Reader, checked by Sluice's config check"},
    "config :sluice, allowed_users:" =>
      {:config, "a config file: evaluated by Config.Reader, checked by Sluice's config check"},
    "config :sluice, shutdown_grace:" =>
      {:config, "a config file: evaluated by Config.Reader, checked by Sluice's config check"},
    "defp deps do" =>
      {:mix_project, "a mix.exs excerpt: compiled inside a module, its deps/0 checked"}
  }

  @peer_node ~s(:"gpu1@10.0.0.7")

  # name => script. Each stands in for a program that is not on a test machine.
  @stubs %{
    "journalctl" => ~S"""
    # journalctl -f: log lines, for ever
    exec yes "Dec 07 17:00:00 host app[42]: a log line"
    """,
    "redis-server" => ~S"""
    echo "* Ready to accept connections tcp"
    exec sleep 600
    """,
    "nvidia-smi" => ~S"""
    echo "GPU 0: Stand-in GPU (UUID: GPU-00000000)"
    """,
    "pg_dump" => ~S"""
    echo "-- PostgreSQL database dump of $1"
    echo "CREATE TABLE users (id integer);"
    """,
    "aws" => ~S"""
    # aws s3 cp - s3://b/db.gz: keeps what it reads as ./db.gz, with the profile checked.
    [ "$1 $2 $3" = "s3 cp -" ] && [ "$AWS_PROFILE" = backup ] || { echo "aws: $*" >&2; exit 2; }
    exec cat > "$(basename "$4")"
    """,
    "daemon-check" => "exit 0\n",
    "java" => "exec sleep 600\n",
    "shutdown" => ~S"""
    # /opt/server/bin/shutdown --graceful
    kill -TERM "$CHILD_PID"
    """
  }

  setup_all do
    bin = Path.join(System.tmp_dir!(), "sluice_docs_bin_#{System.unique_integer([:positive])}")
    File.mkdir_p!(bin)

    for {name, script} <- @stubs do
      File.write!(Path.join(bin, name), "#!/bin/sh\n" <> script)
      File.chmod!(Path.join(bin, name), 0o755)
    end

    path = System.get_env("PATH")
    System.put_env("PATH", bin <> ":" <> path)

    # One peer for the blocks that name a node; it inherits PATH (the stubs).
    {peer, node, started} =
      if Enum.any?(@blocks, fn {_, _, code} -> code =~ @peer_node end) do
        started = Nodes.distribute!()
        {peer, node} = Nodes.start_peer!("sluice_docs")
        {peer, node, started}
      else
        {nil, nil, false}
      end

    on_exit(fn ->
      System.put_env("PATH", path)
      File.rm_rf!(bin)
      if peer, do: :peer.stop(peer)
      if started, do: Node.stop()
    end)

    %{bin: bin, peer: peer, peer_node: node}
  end

  test "every block is run or listed with a reason, and the list names real blocks" do
    assert length(@blocks) >= 10

    for {key, _reason} <- @not_run do
      assert Enum.count(@blocks, fn {_, _, code} -> String.contains?(code, key) end) == 1,
             "@not_run key #{inspect(key)} must name exactly one block"
    end
  end

  for {doc, line, code} <- @blocks do
    @tag doc: doc, block_line: line, code: code
    test "#{doc}, the elixir block at line #{line}", context do
      run(context)
    end
  end

  defp run(%{doc: doc, block_line: line, code: code} = context) do
    quoted = Code.string_to_quoted!(code, file: doc, line: line)

    case Enum.find(@not_run, fn {key, _} -> String.contains?(code, key) end) do
      {_key, {:config, _reason}} -> config!(doc, code)
      {_key, {:mix_project, _reason}} -> mix_project!(quoted)
      {_key, {:parse_only, _reason}} -> :ok
      nil -> in_directory(context, fn dir -> evaluate!(context, dir, code, quoted) end)
    end
  end

  # A mix.exs excerpt: its functions compiled in a module; deps/0 must name :sluice.
  defp mix_project!(quoted) do
    name = Module.concat(__MODULE__, "MixProject#{System.unique_integer([:positive])}")

    body =
      quote do:
              (
                unquote(quoted)
                def deps!, do: deps()
              )

    Module.create(name, body, Macro.Env.location(__ENV__))
    assert [{:sluice, _} | _] = name.deps!()
  end

  # Config files: evaluated as config/config.exs would be, then checked by Sluice.
  defp config!(doc, code) do
    config = Config.Reader.eval!(doc, code)
    sluice = Keyword.get(config, :sluice, [])
    old = Application.get_all_env(:sluice)

    try do
      for {key, value} <- sluice, do: Application.put_env(:sluice, key, value)
      Sluice.Control.Config.load!()
    after
      for {key, _} <- sluice, do: Application.delete_env(:sluice, key)
      for {key, value} <- old, do: Application.put_env(:sluice, key, value)
    end
  end

  # The block's directory is the VM's working directory (and the peer's) while it runs.
  defp in_directory(%{temp_dir: dir} = context, fun) do
    prepare!(dir, context.code)
    cwd = File.cwd!()
    File.cd!(dir)
    if context.peer, do: :ok = :peer.call(context.peer, File, :cd, [dir])

    try do
      fun.(dir)
    after
      File.cd!(cwd)
      if context.peer, do: :peer.call(context.peer, File, :cd, [cwd])
    end

    if context.peer && context.code =~ @peer_node, do: Nodes.assert_peer_clean(context.peer)
  end

  # What the examples name, in the block's directory.
  defp prepare!(dir, code) do
    File.ln_s!(Path.join(@root, "examples"), Path.join(dir, "examples"))
    git!(dir)
    File.write!(Path.join(dir, "big.log"), Enum.map_join(1..5_000, &"line #{&1}\n"))
    makefile = "all:\n\t@echo building\n\t@echo a warning >&2\n"
    File.write!(Path.join(dir, "Makefile"), makefile)
    File.mkdir_p!(Path.join(dir, "src"))
    File.write!(Path.join(dir, "src/Makefile"), makefile)
    File.mkdir_p!(Path.join(dir, "backups"))
    File.mkdir_p!(Path.join(dir, "data"))
    File.write!(Path.join(dir, "data/names.txt"), "pear\napple\n")

    # 1,000 requests, 286 of them for /admin (the pipeline block counts them).
    log =
      Enum.map_join(1..1_000, fn i ->
        "10.0.0.#{rem(i, 250)} GET #{if i <= 286, do: "/admin", else: "/"} 200\n"
      end)

    File.write!(Path.join(dir, "access.log.gz"), :zlib.gzip(log))

    if code =~ "avatar.png" do
      File.mkdir_p!(Path.join(dir, "uploads"))
      File.mkdir_p!(Path.join(dir, "thumbs"))
      {_, 0} = System.cmd("convert", ~w(-size 640x480 xc:teal uploads/avatar.png), cd: dir)
    end

    if code =~ "in.ts" do
      {_, 0} =
        System.cmd("ffmpeg", ~w(-nostdin -loglevel error -f lavfi -i testsrc=size=64x48:rate=10
            -f lavfi -i sine=frequency=440 -t 1 -c:v mpeg2video -c:a mp2 in.ts), cd: dir)
    end
  end

  defp git!(dir) do
    {_, 0} = System.cmd("git", ["init", "-q"], cd: dir)

    {_, 0} =
      System.cmd(
        "git",
        ~w(-c user.name=docs -c user.email=docs@localhost commit -q --allow-empty -m docs),
        cd: dir
      )
  end

  defp evaluate!(context, dir, code, quoted) do
    code = placeholders(context, dir, code)

    quoted =
      if code == context.code,
        do: quoted,
        else: Code.string_to_quoted!(code, file: context.doc, line: context.block_line)

    exprs = with {:__block__, _, exprs} <- quoted, do: exprs, else: (expr -> [expr])
    binding = bindings(code)
    test = self()

    {pid, ref} =
      spawn_monitor(fn ->
        env = Code.env_for_eval(file: context.doc, line: context.block_line)

        {_, _, env} =
          Code.eval_quoted_with_env(
            quote(do: import(Sluice.DocsExamples, only: [read_until_prompt: 1])),
            [],
            env
          )

        {last, binding, _env} =
          Enum.reduce(exprs, {nil, binding, env}, fn expr, {_, binding, env} ->
            {value, binding, env} = Code.eval_quoted_with_env(expr, binding, env)

            if not match?({:=, _, _}, expr) and DocsExamples.broken?(value) do
              raise "#{Macro.to_string(expr)}\nreturned #{inspect(value)}"
            end

            {value, binding, env}
          end)

        after_block!(code, binding, last, dir)
        send(test, {:done, self()})
      end)

    receive do
      {:done, ^pid} ->
        receive do: ({:DOWN, ^ref, _, _, _} -> :ok)

      {:DOWN, ^ref, _, _, reason} ->
        flunk(
          "#{context.doc}, the block at line #{context.block_line}, failed:\n#{code}\n\n#{Exception.format_exit(reason)}"
        )
    after
      60_000 ->
        Process.exit(pid, :kill)
        flunk("#{context.doc}, the block at line #{context.block_line}, did not end in a minute")
    end
  end

  defp placeholders(context, dir, code) do
    code
    |> String.replace(@peer_node, inspect(context.peer_node))
    |> String.replace(~s("/backups/), ~s("#{dir}/backups/))
    |> String.replace(~s("/src"), ~s("#{dir}/src"))
    |> String.replace(~s("/data/), ~s("#{dir}/data/))
    |> String.replace("/opt/server/bin/shutdown", Path.join(context.bin, "shutdown"))
    |> then(fn code ->
      if code =~ "user: 1001" do
        %{uid: uid} = Sluice.TestUser.create("sluice_docs")
        String.replace(code, "user: 1001", "user: #{uid}")
      else
        code
      end
    end)
  end

  defp bindings(code) do
    [
      os_pid: if(code =~ "os_pid", do: background_sleep()),
      user_input: "GET /admin"
    ]
  end

  defp background_sleep do
    {out, 0} = System.cmd("sh", ["-c", "sleep 300 > /dev/null 2>&1 & echo $!"])
    pid = out |> String.trim() |> String.to_integer()
    on_exit(fn -> System.cmd("kill", ["-KILL", to_string(pid)], stderr_to_stdout: true) end)
    pid
  end

  # What a block leaves that its own matches do not check, in the block's process.
  defp after_block!(code, binding, last, dir) do
    cond do
      code =~ "redis-server" ->
        # The child spec starts a daemon under a supervisor.
        {:ok, sup} = Supervisor.start_link(binding[:children], strategy: :one_for_one)
        assert [{MyApp.Redis, daemon, :worker, _}] = Supervisor.which_children(sup)

        assert Enum.any?(
                 Sluice.list(),
                 &(&1.owner == daemon and &1.argv == ["redis-server", "--port", "7000"])
               )

      code =~ "zcat" ->
        # The count is of matching lines, and the dump went through gzip to "S3".
        assert last == 286
        {zcat, 0} = System.cmd("zcat", ["db.gz"], cd: dir)
        assert zcat =~ "CREATE TABLE users"

      code =~ "out.webm" and code =~ "nvidia-smi" ->
        assert binding[:out] =~ "GPU 0"
        assert <<0x1A, 0x45, 0xDF, 0xA3, _::binary>> = File.read!(Path.join(dir, "out.webm"))

      true ->
        :ok
    end
  end
end
