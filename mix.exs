# The Rust crates are built by a Mix compiler that lives in the project itself (no hex deps).
Code.require_file("mix/tasks/compile.sluice_native.ex", __DIR__)
# The docs chunk of the Erlang module `sluice`, for `h(sluice)` in erl (edoc, no hex deps).
Code.require_file("mix/tasks/compile.sluice_erlang_docs.ex", __DIR__)

defmodule Sluice.MixProject do
  use Mix.Project

  def project do
    [
      app: :sluice,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      compilers: [:sluice_native | Mix.compilers()] ++ [:sluice_erlang_docs],
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: [],
      aliases: aliases(),
      preferred_cli_env: ["sluice.bench": :prod],
      source_url: "https://example.invalid/sluice",
      docs: [
        main: "readme",
        extras: [
          "README.md",
          "docs/architecture.md",
          "docs/protocol.md",
          "docs/guarantees.md",
          "docs/erlang.md",
          "docs/production.md"
        ]
      ]
    ]
  end

  def application do
    [extra_applications: [:logger], mod: {Sluice.Application, []}]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]

  defp aliases do
    []
  end
end
