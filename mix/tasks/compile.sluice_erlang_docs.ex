defmodule Mix.Tasks.Compile.SluiceErlangDocs do
  @moduledoc """
  Builds the EEP-48 documentation chunk of the Erlang module `sluice` from the edoc
  comments of `src/sluice.erl`, so that `h(sluice)` and `h(sluice, run)` work in `erl`
  (and `code:get_doc(sluice)` returns them).

  OTP 25 has no `-doc` attributes: edoc's chunk doclet writes `doc/chunks/sluice.chunk`,
  which `code:get_doc/1` looks for next to the application's `ebin/` (here
  `_build/ENV/lib/sluice/doc/chunks/`; `scripts/erlang_lib.sh` copies it with `ebin/`).
  The chunk is rebuilt when it is older than its source.
  """
  use Mix.Task.Compiler

  @shortdoc "Builds the docs chunk of the Erlang module sluice with edoc"
  @sources ["src/sluice.erl"]

  @impl true
  def run(_args) do
    root = Path.dirname(Mix.Project.project_file())
    dir = Path.join(Mix.Project.app_path(), "doc")
    stale = Enum.filter(@sources, &stale?(Path.join(root, &1), chunk(dir, &1)))

    if stale == [] do
      {:noop, []}
    else
      build(root, dir, stale)
    end
  end

  @impl true
  def clean do
    for source <- @sources, do: File.rm(chunk(Path.join(Mix.Project.app_path(), "doc"), source))
    :ok
  end

  defp chunk(dir, source),
    do: Path.join([dir, "chunks", Path.basename(source, ".erl") <> ".chunk"])

  defp stale?(source, chunk) do
    case {File.stat(source, time: :posix), File.stat(chunk, time: :posix)} do
      {{:ok, s}, {:ok, c}} -> s.mtime > c.mtime
      _ -> true
    end
  end

  defp build(root, dir, sources) do
    unless Code.ensure_loaded?(:edoc) do
      Mix.raise("edoc not found: install OTP's edoc (Debian: apt-get install erlang-edoc)")
    end

    File.mkdir_p!(dir)

    # The chunk doclet writes DIR/chunks/MODULE.chunk.
    options = [
      doclet: :edoc_doclet_chunks,
      layout: :edoc_layout_chunks,
      dir: String.to_charlist(dir),
      preprocess: true,
      includes: [String.to_charlist(Path.join(root, "src"))]
    ]

    files = Enum.map(sources, &String.to_charlist(Path.join(root, &1)))

    case edoc(files, options) do
      :ok ->
        Enum.each(sources, &keep_exported(Path.join(root, &1), chunk(dir, &1)))
        {:ok, []}

      {:error, reason} ->
        Mix.shell().error("edoc failed for #{Enum.join(sources, ", ")}: #{inspect(reason)}")
        {:error, []}
    end
  end

  # The chunk doclet lists every function and type, unexported ones included (with no
  # text: "There is no documentation for fold_checked/5" in the shell): keep the API only.
  defp keep_exported(source, chunk) do
    {:ok, forms} = :epp.parse_file(String.to_charlist(source), [])

    exported =
      for {:attribute, _, kind, list} <- forms,
          kind in [:export, :export_type],
          {name, arity} <- list,
          into: MapSet.new(),
          do: {if(kind == :export, do: :function, else: :type), name, arity}

    {:docs_v1, _, _, _, _, _, entries} = docs = :erlang.binary_to_term(File.read!(chunk))
    entries = Enum.filter(entries, fn {key, _, _, _, _} -> MapSet.member?(exported, key) end)
    File.write!(chunk, :erlang.term_to_binary(put_elem(docs, 6, entries), [:compressed]))
  end

  # edoc reports a syntax error in a comment on stdout and raises or exits.
  defp edoc(files, options) do
    :edoc.files(files, options)
  catch
    kind, reason -> {:error, {kind, reason}}
  end
end
