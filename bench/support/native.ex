defmodule Bench.Native do
  @moduledoc false
  # The native baselines: native/sluice_bench, built with cargo here (not by `mix compile`,
  # so the library build is not slowed by it).

  @native Path.expand("../../native", __DIR__)

  @doc "Builds sluice_bench (release) and returns its path."
  def build! do
    cargo =
      System.find_executable("cargo") || Path.expand("~/.cargo/bin/cargo") ||
        raise "cargo not found"

    args = ["build", "--quiet", "--locked", "--release", "-p", "sluice_bench"]

    case System.cmd(cargo, args, cd: @native, stderr_to_stdout: true) do
      {_, 0} -> exe()
      {out, status} -> raise "cargo build -p sluice_bench failed (#{status}):\n#{out}"
    end
  end

  def exe, do: Path.join(@native, "target/release/sluice_bench")

  @doc "Mean µs per spawn+wait of /bin/true, `mode` \"std\" (posix_spawn) or \"fork\"."
  def spawn(n, mode), do: run(["spawn", "#{n}", mode])["ns_per_spawn"] / 1_000

  @doc "Bytes/s reading `total` bytes of `head -c total /dev/zero` with `size`-byte reads."
  def read(size, total, pipe_size \\ nil) do
    args = ["read", "#{size}", "#{total}"] ++ if(pipe_size, do: ["#{pipe_size}"], else: [])
    result = run(args)
    ^total = result["bytes"]
    result["bytes_per_sec"]
  end

  @doc "Bytes/s reading the whole stdout of `argv` with `size`-byte reads; checks `total`."
  def read_cmd(size, argv, total) do
    result = run(["read-cmd", "#{size}", "--" | argv])
    ^total = result["bytes"]
    result["bytes_per_sec"]
  end

  @doc "Bytes/s reading `head -c total /dev/zero` on a pty (opost off) from its master."
  def pty_read(size, total) do
    result = run(["pty-read", "#{size}", "#{total}"])
    ^total = result["bytes"]
    result["bytes_per_sec"]
  end

  @doc "The argv of the native producer: `total` bytes in 1 MiB writes."
  def produce_argv(total), do: [exe(), "produce", "#{total}"]

  defp run(args) do
    case System.cmd(exe(), args, stderr_to_stdout: true) do
      {out, 0} ->
        out
        |> String.split()
        |> Map.new(fn kv ->
          [k, v] = String.split(kv, "=")
          {k, String.to_integer(v)}
        end)

      {out, status} ->
        raise "sluice_bench #{Enum.join(args, " ")} failed (#{status}): #{out}"
    end
  end
end
