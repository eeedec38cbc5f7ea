defmodule Bench.Sandbox do
  @moduledoc false
  # 14. The price of a sandbox: `/bin/true` run to completion by `Sluice.run` with
  # `sandbox: true` (new mount, pid, network, UTS and IPC namespaces, the host read-only,
  # private /tmp, /proc and /dev, no capabilities, seccomp), against the same isolation
  # through Debian's bubblewrap started by `Sluice.run`, and against no sandbox at all.
  # Interleaved round-robin; each sample is the mean of `sandbox_runs` sequential runs.

  alias Bench.{Format, Interleave, Section, Stats, Target}

  @bwrap ~w(bwrap --unshare-all --die-with-parent --ro-bind / / --tmpfs /tmp --proc /proc
            --dev /dev true)
  @sandboxed "Sluice.run(sandbox: true)"
  @bwrapped "Sluice.run([\"bwrap\", ...])"
  @plain "Sluice.run (no sandbox)"

  def run(config) do
    runs = config.sandbox_runs

    contenders = [
      {@sandboxed,
       fn -> per_run(runs, fn -> ok(Sluice.run(["/bin/true"], sandbox: true)) end) end},
      {@bwrapped, fn -> per_run(runs, fn -> ok(Sluice.run(@bwrap)) end) end},
      {@plain, fn -> per_run(runs, fn -> ok(Sluice.run(["/bin/true"])) end) end}
    ]

    # Warm-up: the helper program, the page cache of bwrap and of the namespaces' code.
    Enum.each(contenders, fn {_, fun} -> fun.() end)
    samples = Interleave.run(contenders, config.reps)
    median = &Stats.median(samples[&1])
    ratio = Stats.ratio(median.(@sandboxed), median.(@bwrapped))

    rows =
      for {name, _} <- contenders do
        [
          "`/bin/true` run to completion, per run",
          name,
          Format.us(median.(name)),
          Format.us(Enum.min(samples[name])),
          Format.us(Enum.max(samples[name])),
          Format.ratio(Stats.ratio(median.(name), median.(@bwrapped)))
        ]
      end

    %Section{
      title: "14. sandbox",
      what:
        "`/bin/true` in a sandbox: `Sluice.run([\"/bin/true\"], sandbox: true)` against " <>
          "the same isolation through bubblewrap (`Sluice.run([#{Enum.join(@bwrap, ", ")}])`) " <>
          "and against `Sluice.run([\"/bin/true\"])` unsandboxed. Per run, lower is better; " <>
          "\"vs bwrap\" is contender / bwrap. #{config.reps} interleaved repetitions of " <>
          "#{runs} sequential runs (median of the repetitions' means).",
      columns: ["measurement", "contender", "median", "min", "max", "vs bwrap"],
      rows: rows,
      targets: [
        Target.check(
          "sandbox: a sandboxed /bin/true costs no more than a bwrap-wrapped one",
          ratio,
          :<=,
          1.0,
          &Format.ratio/1
        )
      ],
      notes: [
        "Both sandboxes make new mount, pid, network, UTS and IPC namespaces (bwrap's " <>
          "`--unshare-all` also a user and a cgroup namespace), mount a tmpfs on /tmp, a " <>
          "new proc and a minimal /dev. Sluice's adds the seccomp filter and drops every " <>
          "capability; bwrap runs as one more program (exec of bwrap, then of `true`) and " <>
          "stays as the sandbox's pid 1. Sluice's sandbox is three processes (a monitor, " <>
          "an init, the program), forked without an exec between them."
      ]
    }
  end

  defp ok({:ok, %{status: 0}}), do: :ok

  # Mean µs per run over `n` sequential runs.
  defp per_run(n, fun) do
    {us, _} = :timer.tc(fn -> Enum.each(1..n, fn _ -> fun.() end) end)
    us / n
  end
end
