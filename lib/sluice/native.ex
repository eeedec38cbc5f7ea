defmodule Sluice.Native do
  @moduledoc false
  # The Rust NIF (native/sluice_nif): non-blocking I/O on pipe fds with enif_select.
  # Readiness arrives as {:select, fd, :undefined, :ready_input | :ready_output}.

  @on_load :load_nif

  @doc false
  def load_nif do
    path = :code.priv_dir(:sluice) |> Path.join("native/libsluice_nif") |> String.to_charlist()
    :erlang.load_nif(path, 0)
  end

  @doc false
  def connect(_path), do: :erlang.nif_error(:nif_not_loaded)
  @doc false
  def recv_fds(_sock), do: :erlang.nif_error(:nif_not_loaded)
  @doc false
  def read(_fd, _max), do: :erlang.nif_error(:nif_not_loaded)
  @doc false
  def try_read(_fd, _max), do: :erlang.nif_error(:nif_not_loaded)
  @doc false
  def write(_fd, _iodata), do: :erlang.nif_error(:nif_not_loaded)
  @doc false
  def close(_fd), do: :erlang.nif_error(:nif_not_loaded)
  @doc false
  def monitor(_fd), do: :erlang.nif_error(:nif_not_loaded)
  @doc false
  def fileno(_fd), do: :erlang.nif_error(:nif_not_loaded)
end
