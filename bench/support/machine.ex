defmodule Bench.Machine do
  @moduledoc false
  # What the results were measured on.

  def info do
    %{
      cpus: :erlang.system_info(:logical_processors_available),
      schedulers: :erlang.system_info(:schedulers_online),
      cpu_model: cpu_model(),
      memory: mem_total(),
      kernel: read("/proc/sys/kernel/osrelease"),
      otp: "OTP #{:erlang.system_info(:otp_release)} (ERTS #{:erlang.system_info(:version)})",
      elixir: System.version(),
      rustc: cmd("rustc", ["--version"]),
      commit: commit(),
      date: DateTime.utc_now() |> DateTime.truncate(:second) |> DateTime.to_iso8601()
    }
  end

  defp cpu_model do
    "/proc/cpuinfo"
    |> File.read!()
    |> String.split("\n")
    |> Enum.find_value("unknown", fn line ->
      case String.split(line, ":", parts: 2) do
        [key, value] -> if String.trim(key) == "model name", do: String.trim(value)
        _ -> nil
      end
    end)
  end

  defp mem_total do
    case Regex.run(~r/MemTotal:\s+(\d+) kB/, File.read!("/proc/meminfo")) do
      [_, kb] -> "#{Float.round(String.to_integer(kb) / 1_048_576, 1)} GiB"
      _ -> "unknown"
    end
  end

  defp commit do
    with sha when is_binary(sha) <- cmd("git", ["rev-parse", "--short", "HEAD"]),
         status when is_binary(status) <- cmd("git", ["status", "--porcelain"]) do
      if status == "", do: sha, else: sha <> " (with uncommitted changes)"
    else
      _ -> "unknown"
    end
  end

  defp read(path) do
    case File.read(path) do
      {:ok, s} -> String.trim(s)
      _ -> "unknown"
    end
  end

  defp cmd(exe, args) do
    with path when is_binary(path) <- System.find_executable(exe),
         {out, 0} <- System.cmd(path, args, stderr_to_stdout: true) do
      String.trim(out)
    else
      _ -> nil
    end
  end
end
