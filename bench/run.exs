# Sluice's benchmark suite: Sluice against Port, System.cmd and native baselines.
#
#     MIX_ENV=prod mix run bench/run.exs            # full run, writes bench/RESULTS.md
#     MIX_ENV=prod mix run bench/run.exs --quick    # smoke test: tiny sizes, no timings
#
# Options: --out PATH (report file), --only spawn,output,... (a subset of sections).
# See bench/README.md.

# One module per file (bench/support/NAME.ex), loaded dependencies first.
~w(section target format stats memory os_procs interleave ports native machine report config
   spawn throughput concurrent output input unread ticker footprint pty worker nodes pipeline cmd
   sandbox main)
|> Enum.each(&Code.require_file("support/#{&1}.ex", __DIR__))

Bench.Main.run(System.argv())
