defmodule Sluice.Native do
  @moduledoc false
  # The Rust NIF (native/sluice_nif): the data plane's only door to the OS. Non-blocking
  # I/O on fds with enif_select; readiness arrives as
  # {:select, fd, :undefined, :ready_input | :ready_output}.

  @on_load :load_nif

  @typedoc "An fd resource: a pipe end, a program channel or the helper's socket."
  @type fd :: reference
  @typedoc "A collector resource: output read into one growing binary (`read_into/3`)."
  @type collector :: reference
  @type errno :: atom

  @doc false
  @spec load_nif() :: :ok | {:error, term}
  def load_nif do
    path = :code.priv_dir(:sluice) |> Path.join("native/libsluice_nif") |> String.to_charlist()
    :erlang.load_nif(path, 0)
  end

  @doc false
  @spec connect(binary) :: {:ok, fd} | {:error, errno}
  def connect(_path), do: :erlang.nif_error(:nif_not_loaded)

  @doc false
  # Sends a spawn request with a new program channel; the caller owns the channel, armed
  # for it: the reply comes as a readiness message.
  @spec spawn(fd, binary) :: {:ok, fd} | {:error, errno}
  def spawn(_sock, _request), do: :erlang.nif_error(:nif_not_loaded)

  @doc false
  @spec spawn_large(fd, binary) :: {:ok, fd} | {:error, errno}
  def spawn_large(_sock, _request), do: :erlang.nif_error(:nif_not_loaded)

  @doc false
  # One message of a program channel; `{:error, :eagain}` arms the channel, and so does a
  # message when `rearm` is true.
  @spec recv(fd, boolean) :: {:ok, binary, [fd]} | :eof | {:error, errno}
  def recv(_channel, _rearm), do: :erlang.nif_error(:nif_not_loaded)

  @doc false
  @spec send(fd, binary) :: :ok | {:error, errno}
  def send(_channel, _payload), do: :erlang.nif_error(:nif_not_loaded)

  @doc false
  @spec read(fd, pos_integer) :: {:ok, binary} | :eof | {:error, errno}
  def read(_fd, _max), do: :erlang.nif_error(:nif_not_loaded)

  @doc false
  # One non-blocking read of at most `max` bytes onto the end of the collector (output
  # read into it stays in one binary, handed over by collected/1 without a copy): the
  # number of bytes read; otherwise as read/2. Given `nil`, a read that brings bytes makes
  # the collector and returns it too; one that does not allocates nothing.
  @spec read_into(fd, collector | nil, pos_integer) ::
          {:ok, pos_integer} | {:ok, pos_integer, collector} | :eof | {:error, errno}
  def read_into(_fd, _collector, _max), do: :erlang.nif_error(:nif_not_loaded)

  @doc false
  # Every byte read into the collector, as one binary; the collector is empty afterwards.
  @spec collected(collector) :: binary
  def collected(_collector), do: :erlang.nif_error(:nif_not_loaded)

  @doc false
  @spec write(fd, iodata) :: {:ok, non_neg_integer} | {:error, errno}
  def write(_fd, _iodata), do: :erlang.nif_error(:nif_not_loaded)

  @doc """
  Writes as much of `data` as the fd takes now: `{:ok, rest}` with what is left to
  write when it is full (`""` when all went), or the error. The one write loop of the
  pipes and the terminal.
  """
  @spec write_ready(fd, binary) :: {:ok, binary} | {:error, errno}
  def write_ready(_fd, ""), do: {:ok, ""}

  def write_ready(fd, data) do
    case write(fd, data) do
      {:ok, n} when n == byte_size(data) -> {:ok, ""}
      {:ok, n} -> write_ready(fd, binary_part(data, n, byte_size(data) - n))
      {:error, :eagain} -> {:ok, data}
      {:error, reason} -> {:error, reason}
    end
  end

  @doc false
  @spec close(fd) :: :ok
  def close(_fd), do: :erlang.nif_error(:nif_not_loaded)

  @doc false
  @spec monitor(fd) :: :ok | {:error, :noproc}
  def monitor(_fd), do: :erlang.nif_error(:nif_not_loaded)

  @doc false
  # TIOCSWINSZ on a pseudo-terminal's master: the foreground group gets SIGWINCH.
  @spec set_window_size(fd, pos_integer, pos_integer) :: :ok | {:error, errno}
  def set_window_size(_fd, _rows, _cols), do: :erlang.nif_error(:nif_not_loaded)

  @doc false
  # Applies RFC 4254 `{opcode, value}` modes to a pseudo-terminal (through its master) at
  # once, and reads them back: `{:unsupported, opcode, value}` when Linux has no place for
  # a value (nothing set), `{:rejected, opcode, value}` when the terminal did not take it.
  @spec set_terminal_modes(fd, [{0..255, non_neg_integer}]) ::
          :ok | {:error, {:unsupported | :rejected, 0..255, non_neg_integer} | errno}
  def set_terminal_modes(_fd, _modes), do: :erlang.nif_error(:nif_not_loaded)

  @doc false
  # How the terminal treats input now: `:raw` (ICANON off), or canonical with its VEOF
  # (0: disabled), the bytes of an unfinished line it surely keeps, the bytes after which
  # the line is empty again, those that take no room in it, and those that quote the
  # next byte (VLNEXT) (native/sluice_nif/src/terminal.rs).
  @spec terminal_input(fd) ::
          {:ok, :raw | {:canonical, byte, pos_integer, binary, binary, binary}}
          | {:error, errno}
  def terminal_input(_fd), do: :erlang.nif_error(:nif_not_loaded)

  @doc false
  # The VM's current working directory (getcwd), on the calling scheduler.
  @spec cwd() :: {:ok, binary} | {:error, errno}
  def cwd, do: :erlang.nif_error(:nif_not_loaded)

  @doc false
  @spec fileno(fd) :: integer
  def fileno(_fd), do: :erlang.nif_error(:nif_not_loaded)
end
