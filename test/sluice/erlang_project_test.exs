defmodule Sluice.ErlangProjectTest do
  # docs/erlang.md's rebar3 project, as written: its files (the ```erlang blocks that start
  # with a comment naming a file, `%% my_app/rebar.config') are written to a fresh
  # directory, the libraries are built by scripts/erlang_lib.sh, and the ```sh block that
  # runs rebar3 is run line by line in bash, with /opt/sluice/lib that directory.
  use Sluice.Case, async: false

  @moduletag :external_vm
  @moduletag :temp_dir
  @moduletag timeout: 600_000

  @doc_path "docs/erlang.md"

  test "the rebar3 project of docs/erlang.md builds, tests and releases as written",
       %{temp_dir: dir} do
    rebar3 = System.find_executable("rebar3")
    assert rebar3, "rebar3 is missing: scripts/setup.sh installs it (apt-get install rebar3)"

    markdown = File.read!(@doc_path)
    files = project_files(markdown)

    assert Enum.map(files, &elem(&1, 0)) |> Enum.sort() == [
             "my_app/rebar.config",
             "my_app/src/my_app.app.src",
             "my_app/src/my_app.erl",
             "my_app/test/my_app_tests.erl"
           ]

    for {path, code} <- files do
      File.mkdir_p!(Path.dirname(Path.join(dir, path)))
      File.write!(Path.join(dir, path), code <> "\n")
    end

    libs = Path.join(dir, "lib")
    {_, 0} = System.cmd("bash", ["scripts/erlang_lib.sh", libs], stderr_to_stdout: true)

    [commands] = for block <- sh_blocks(markdown), block =~ "rebar3 release", do: block
    release = Path.join(dir, "my_app/_build/default/rel/my_app/bin/my_app")
    on_exit(fn -> System.cmd(release, ["stop"], stderr_to_stdout: true) end)

    script = "set -euo pipefail\n" <> String.replace(commands, "/opt/sluice/lib", libs)

    {out, status} =
      System.cmd("bash", ["-c", script],
        cd: dir,
        stderr_to_stdout: true,
        env: [{"REBAR_COLOR", "none"}]
      )

    assert status == 0, out
    assert out =~ "1 tests, 0 failures"
    # What the eval prints ("The `eval` prints `true`").
    assert out =~ ~r/^true$/m, out
    assert markdown =~ "The `eval` prints `true`."
  end

  # {path, code} of every ```erlang block whose first line is `%% dir/file`.
  defp project_files(markdown) do
    for code <- blocks(markdown, "erlang"),
        [_, path] <- [Regex.run(~r/\A%% ([a-z_0-9]+\/\S+)\n/, code)],
        do: {path, code}
  end

  defp sh_blocks(markdown), do: blocks(markdown, "sh")

  defp blocks(markdown, language) do
    Regex.scan(~r/^```#{language}\n(.*?)^```$/ms, markdown, capture: :all_but_first)
    |> Enum.map(fn [code] -> String.trim_trailing(code) end)
  end
end
