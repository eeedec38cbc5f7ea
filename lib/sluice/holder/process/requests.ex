defmodule Sluice.Holder.Process.Requests do
  @moduledoc false
  # The pending work of a Sluice.Process server, as a typed value: queued reads (served in
  # order, each from its own source), queued writes (in order, the head possibly half
  # written), and callers waiting for the exit. Timeouts are kept here, in the server, so
  # no data is ever read for a caller that already gave up.

  alias Sluice.Program
  alias Sluice.Program.{Fds, Output}

  defstruct reads: [], writes: :queue.new(), exit_waiters: [], stop_waiters: []

  @doc "No pending work."
  @spec new() :: t
  def new, do: %__MODULE__{}

  @type timer :: {reference, reference} | nil
  @type read :: %{
          from: GenServer.from(),
          source: :stdout | :stderr | :any,
          max: pos_integer,
          timer: timer
        }
  @type write :: %{from: GenServer.from(), data: binary, written: non_neg_integer, timer: timer}
  @type waiter :: %{from: GenServer.from(), timer: timer}
  @type t :: %__MODULE__{
          reads: [read],
          writes: :queue.queue(write),
          exit_waiters: [waiter],
          stop_waiters: [waiter]
        }

  @doc "A request record with its timer (a message to the server after `timeout`)."
  @spec request(map, timeout, atom) :: map
  def request(fields, timeout, kind), do: Map.put(fields, :timer, timer(timeout, kind))

  defp timer(:infinity, _kind), do: nil

  defp timer(ms, kind) do
    tag = make_ref()
    {tag, Process.send_after(self(), {:sluice_timeout, tag, kind}, ms)}
  end

  @doc "Answers a request and cancels its timer."
  @spec reply(map, term) :: :ok
  def reply(%{from: from, timer: timer}, answer) do
    with {_tag, ref} <- timer, do: Process.cancel_timer(ref)
    GenServer.reply(from, answer)
  end

  ## Reads

  @doc """
  Serves queued reads in order. A source that would block is skipped for the rest of the
  pass (the NIF armed enif_select on it), so one slow output never delays the other.
  """
  @spec serve_reads(t, Program.t()) :: {t, Program.t()}
  def serve_reads(%{reads: []} = r, program), do: {r, program}

  def serve_reads(r, program) do
    {kept, program, _blocked} =
      Enum.reduce(r.reads, {[], program, []}, fn req, {kept, program, blocked} ->
        case read_one(req, sources(req.source, program), program, blocked) do
          {:done, answer, program, blocked} ->
            reply(req, answer)
            {kept, program, blocked}

          {:wait, program, blocked} ->
            {[req | kept], program, blocked}
        end
      end)

    {%{r | reads: Enum.reverse(kept)}, program}
  end

  @doc """
  A read of `source` tried at once, for when no read waits before it: `{:done, answer,
  program}` when its output had data, or is at its end (or failed), else `{:wait,
  program}`, every output it may come from armed.
  """
  @spec read_now(Program.t(), :stdout | :stderr | :any, pos_integer) ::
          {:done, term, Program.t()} | {:wait, Program.t()}
  def read_now(program, source, max) do
    case read_one(%{source: source, max: max}, sources(source, program), program, []) do
      {:done, answer, program, _blocked} -> {:done, answer, program}
      {:wait, program, _blocked} -> {:wait, program}
    end
  end

  defp sources(:any, program), do: Enum.filter([:stdout, :stderr], &Program.piped?(program, &1))
  defp sources(source, _pipes), do: [source]

  defp read_one(req, srcs, program, blocked) do
    open = Enum.filter(srcs, &Output.open?(program, &1))

    case open -- blocked do
      [] when open == [] -> {:done, :eof, program, blocked}
      [] -> {:wait, program, blocked}
      ready -> read_ready(req, ready, srcs, program, blocked)
    end
  end

  # Fair between the outputs, as every reader (Sluice.Program.Output).
  defp read_ready(req, ready, srcs, program, blocked) do
    case Output.next(program, ready, req.max) do
      {:data, src, data, program} ->
        answer = if req.source == :any, do: {:ok, {src, data}}, else: {:ok, data}
        {:done, answer, program, blocked}

      {:error, _src, reason, program} ->
        {:done, {:error, reason}, program, blocked}

      # Each of them would block, or is at its end.
      {_blocked_or_eof, program} ->
        read_one(req, srcs, program, ready ++ blocked)
    end
  end

  ## Writes

  @doc "Writes queued data in order, as far as stdin takes it now."
  @spec serve_writes(t, Program.t()) :: {t, Program.t()}
  def serve_writes(r, program) do
    case :queue.out(r.writes) do
      {:empty, _} ->
        {r, program}

      {{:value, req}, rest} ->
        case Fds.write(program, req.data) do
          {:ok, "", program} ->
            reply(req, :ok)
            serve_writes(%{r | writes: rest}, program)

          {:ok, left, program} ->
            req = %{
              req
              | data: left,
                written: req.written + byte_size(req.data) - byte_size(left)
            }

            {%{r | writes: :queue.in_r(req, rest)}, program}

          {:error, reason} ->
            reply(req, {:error, reason})
            serve_writes(%{r | writes: rest}, program)
        end
    end
  end

  @doc "Answers every queued write (stdin was closed)."
  @spec fail_writes(t, term) :: t
  def fail_writes(r, answer) do
    r.writes |> :queue.to_list() |> Enum.each(&reply(&1, answer))
    %{r | writes: :queue.new()}
  end

  ## Timeouts

  @doc "Expires the request whose timer fired; a write says how much of it was written."
  @spec expire(t, reference, atom) :: t
  def expire(r, tag, :read), do: %{r | reads: expire_in(r.reads, tag)}
  def expire(r, tag, :await_exit), do: %{r | exit_waiters: expire_in(r.exit_waiters, tag)}

  def expire(r, tag, :write) do
    writes = r.writes |> :queue.to_list() |> expire_in(tag) |> :queue.from_list()
    %{r | writes: writes}
  end

  defp expire_in(requests, tag) do
    {expired, kept} = Enum.split_with(requests, &match?({^tag, _}, &1.timer))

    Enum.each(expired, fn
      %{written: n} = req -> GenServer.reply(req.from, {:error, {:timeout, n}})
      req -> GenServer.reply(req.from, {:error, :timeout})
    end)

    kept
  end

  @doc "Answers everyone waiting with `answer`."
  @spec fail_all(t, term) :: t
  def fail_all(r, answer) do
    Enum.each(r.reads, &reply(&1, answer))
    r = fail_writes(r, answer)
    Enum.each(r.exit_waiters ++ r.stop_waiters, &reply(&1, answer))
    %__MODULE__{}
  end
end
