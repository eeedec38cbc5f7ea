%% @doc Run external OS programs from Erlang, safely and fast.
%%
%% The Erlang face of Sluice, shaped like `open_port/2' and `gen_tcp': one call
%% (`run/2'), output folded as it comes, with back-pressure (`fold/4', `foreach/3', as
%% `lists:foldl/3' over the program's output), a process per program (`start_link/2',
%% `send/2', `recv/2', `close_stdin/1', `stop/2'), active mode (`setopts/2' with
%% `{active, once | N}'), daemons under a supervisor (`daemon_spec/2'), and
%% request/response workers (`start_worker/2', `call/3').
%%
%% Every program has back-pressure both ways and dies with its owner (the caller of
%% `run/2', `start/2' or `start_link/2'), including when the VM is killed.
%%
%% Arguments follow OTP's conventions: argv is a list of strings or binaries (or a
%% `pipeline/1'); options are a proplist, where a bare atom means `true' (`[clear_env,
%% pty]' for `run/2', `[lines]' for `fold/4'), or a map;
%% `{env, [{Name, Value | false}]}' where `false' unsets. Every option of the Elixir
%% API (`Sluice.Options') is accepted under the same name by the function that does what
%% it is about: those of Elixir's streams (`lines', `chunk_size', `exit_timeout') by
%% `fold/4' and `foreach/3', those of daemons by `daemon_spec/2'; elsewhere such an option
%% is a `badarg' naming it. Results and errors are maps,
%% statuses are `Code | {signal, Name}', and active-mode messages are
%% `{sluice_stdout, P, Data}', `{sluice_stderr, P, Data}', `{sluice_passive, P}',
%% `{sluice_exit, P, Status}' and `{sluice_error, P, Reason}'. `pipeline/1' joins
%% programs by kernel pipes. `pty' runs a program on a
%% pseudo-terminal (`set_window_size/3' resizes it), `manage/2' adopts a
%% process Sluice did not start, and `list/0' shows every program of the node.
%%
%% A programming mistake (a bad option, a malformed argv) raises
%% `error:{badarg, What, Message}', where `What' names the option or argument and
%% `Message' says what was expected; the shell explains it through `format_error/2'.
%% Runtime failures are returned as `{error, Map}' (see `format_error/1').
%% See docs/erlang.md.
-module(sluice).

-export([run/1, run/2]).
-export([fold/3, fold/4, foreach/2, foreach/3]).
-export([start/1, start/2, start_link/1, start_link/2]).
-export([send/2, send/3, recv/2, recv/3, recv_stderr/3, close_stdin/1]).
-export([signal/2, stop/1, stop/2, await_exit/1, await_exit/2, os_pid/1, stats/1, stats/2]).
-export([setopts/2, controlling_process/2, set_window_size/3, set_terminal_modes/2]).
-export([close_output/2, stop_program/1, stop_program/2]).
-export([daemon_spec/2, start_daemon/2]).
-export([manage/1, manage/2, list/0, info/1]).
-export([start_worker/2, worker_spec/2, call/2, call/3]).
-export([pipeline/1]).
-export([format_error/1, format_error/2]).

-export_type([argv/0, command/0, pipeline/0, options/0, status/0, result/0, error_map/0]).
-export_type([element/0, program_info/0, stats/0]).

% An edoc comment follows the type it documents.
-type argv() :: [string() | binary(), ...].
%% A program and its arguments, executed directly (no shell).
-type pipeline() :: 'Elixir.Sluice.Pipeline':t().
%% What `pipeline/1' returns; it goes wherever argv goes.
-type command() :: argv() | pipeline().
-type option() :: atom() | {atom(), term()}.
-type options() :: [option()] | #{atom() => term()}.
%% A proplist, where a bare atom means `true', or a map.
-type status() :: non_neg_integer() | {signal, atom() | pos_integer()}.
%% An exit code, or the signal that ended the program.
-type result() :: #{
    status := status(),
    stdout := binary() | undefined,
    stderr := binary() | undefined,
    os_pid := pos_integer() | undefined,
    statuses := [status()] | undefined,
    core_dumped := boolean(),
    usage := map() | undefined
}.
%% What `run/2' returns: the exit `status' (of a pipeline, the last stage's), every
%% stage's in `statuses', the output (`undefined' when not captured), `os_pid',
%% `core_dumped', and `usage': `#{source := cgroup | rusage, cpu_user_us, cpu_system_us,
%% max_rss_kb}' (`undefined' when the program's end was not seen). See docs/erlang.md.
-type error_map() :: #{
    reason := atom(),
    message := binary(),
    stage => atom(),
    result => result(),
    acc => term()
}.
%% A runtime failure: `reason' and `message' (see `format_error/1'), with `stage' (where a
%% spawn failed), `result' (the partial result of a `timeout', `max_output' or
%% `idle_timeout') and `acc' (the accumulator of `fold/4' as it stood) when they apply.
-type element() ::
    binary()
    | {eol | noeol, binary()}
    | {stdout | stderr, binary() | {eol | noeol, binary()}}.
%% What `fold/4' and `foreach/3' pass to their fun: a chunk of stdout; a line with
%% `lines'; a frame with `{framing, {line, Max}}' (or `{packet, N}'); tagged with
%% `{stderr, consume}'.
-type stats() :: #{
    usage := #{source := cgroup | rusage, atom() => non_neg_integer()} | undefined,
    pids_current := non_neg_integer(),
    bytes_read := non_neg_integer(),
    bytes_written := non_neg_integer(),
    age_ms := non_neg_integer(),
    core_dumped => boolean(),
    statuses => [status()]
}.
%% What `stats/2' returns: the cost so far (`usage'), the processes of the program
%% (`pids_current'), the bytes through its pipes and its age.
-type process() :: pid() | atom().
-type program_info() :: #{
    pid := pid(),
    os_pid := pos_integer(),
    argv := [binary()],
    pipeline := [[binary()]] | undefined,
    owner := pid(),
    started_at := integer(),
    managed := boolean(),
    cgroup := binary() | undefined
}.
%% One program of the node, as `list/0' and `info/1' show it (`started_at' in Unix ms).

-define(ELIXIR_PROCESS, 'Elixir.Sluice.Process').

% Runs Body, a call of this module's API with arguments Args. A programming mistake
% found on the way (a badarg thrown by sluice_terms:badarg/2, or an ArgumentError of the
% Elixir API, with the Sluice.OptionError it carries) is raised as
% error:{badarg, What, Message} from the API function itself, with OTP's error_info, so
% the shell explains it through format_error/2.
-define(CHECKED(Args, Body),
    try
        Body
    catch
        throw:{sluice_terms, badarg, What__, Message__} ->
            erlang:error({badarg, What__, Message__}, Args, [{error_info, #{module => ?MODULE}}]);
        error:#{'__struct__' := 'Elixir.ArgumentError'} = Mistake__:Where__ ->
            erlang:error(
                sluice_terms:mistake(Mistake__, Where__, {?FUNCTION_NAME, ?FUNCTION_ARITY}),
                Args,
                [{error_info, #{module => ?MODULE}}]
            )
    end
).

% Runs Body, which calls the caller's fun through apply_fold_fun/3: an exception of that
% fun comes out as it was raised.
-define(FUN_EXCEPTIONS(Body),
    try
        Body
    catch
        throw:{?MODULE, fun_raised, Class__, Reason__, Stack__} ->
            erlang:raise(Class__, Reason__, Stack__)
    end
).

%%% One call

%% @doc Runs `Argv' to completion with default options; see `run/2'.
-spec run(command()) -> {ok, result()} | {error, error_map()}.
run(Argv) ->
    run(Argv, []).

%% @doc Runs `Argv' (or a `pipeline/1') to completion and collects its output; to take
%% the output as it comes instead, see `fold/4'.
%%
%% Returns `{ok, Result}' for every exit status (a non-zero exit is a result, not an
%% error), or `{error, Map}' when the program could not start, on `timeout', when the
%% output exceeds `max_output', or after `idle_timeout' ms without output (those three
%% carry the partial result under `result'). Options: `{input, IoData}', `{timeout, Ms}',
%% `{stderr, capture | stdout | null | console}', `{max_output, Bytes}',
%% `{idle_timeout, Ms}', `{node, Node}', and the spawn options of `start_link/2' (not
%% `framing' or `use_stdio').
-spec run(command(), options()) -> {ok, result()} | {error, error_map()}.
run(Argv, Opts) ->
    Args = [Argv, Opts],
    sluice_terms:reply(
        ?CHECKED(Args, 'Elixir.Sluice':run(sluice_terms:argv(Argv), sluice_terms:run_options(Opts)))
    ).

%%% Output as it comes

%% @doc Folds `Fun' over the program's output with default options; see `fold/4'.
-spec fold(command(), fun((element(), Acc) -> Acc), Acc) ->
    {ok, Acc, status()} | {error, error_map()}.
fold(Argv, Fun, Acc0) ->
    fold(Argv, Fun, Acc0, []).

%% @doc Runs `Argv' and folds `Fun(Element, Acc)' over its output as it comes, as
%% `lists:foldl/3' does over a list, with back-pressure: the next chunk is read only when
%% `Fun' has returned, so a program that writes faster than `Fun' takes waits (its pipe
%% is full) and the VM's memory does not grow.
%%
%% Returns `{ok, Acc, Status}' once the output ended and the program exited, for every
%% exit status (as `run/2', a non-zero exit is a result, not an error; of a pipeline, the
%% last stage's). A runtime failure is `{error, Map}' as for `run/2', with `acc', the
%% accumulator as it stood (`Acc0' if the program did not start): a spawn error,
%% `idle_timeout', `frame_too_large', `helper_down', `nodedown'. An exception of `Fun'
%% passes through `fold/4' unchanged, after the program was stopped: throw to stop early.
%%
%% Elements are stdout chunks (binaries of at most `{chunk_size, Bytes}', default
%% 65536); lines without their newline with `lines' (the last one is passed at EOF
%% even without a newline; a line longer than `{max_line_length, Bytes}', default 1 MiB,
%% comes in pieces of that length); frames with `{framing, {line, Max}}'
%% (`{eol | noeol, Line}') or `{framing, {packet, N}}'; and with `{stderr, consume}'
%% each of these tagged `{stdout, _}' or `{stderr, _}', in the order they were read.
%% Other options: `{input, IoData | Fun}', `{input_in, caller | process}' (where a `Fun'
%% input runs: in the caller, the default, or in a linked process of its own, so that the
%% program's exit ends the call while it waits), `{stderr, console | null | stdout | consume}',
%% `{idle_timeout, Ms}' (without output while `Fun' waits for it), `{exit_timeout, Ms}'
%% (after EOF, then the program is stopped), `{max_line_length, Bytes}', and those of
%% `start_link/2'.
-spec fold(command(), fun((element(), Acc) -> Acc), Acc, options()) ->
    {ok, Acc, status()} | {error, error_map()}.
fold(Argv, Fun, Acc0, Opts) ->
    Args = [Argv, Fun, Acc0, Opts],
    ?FUN_EXCEPTIONS(?CHECKED(Args, fold_checked(Argv, Fun, Acc0, Opts, "sluice:fold/4"))).

%% @doc Calls `Fun' on each element of the output with default options; see `foreach/3'.
-spec foreach(command(), fun((element()) -> term())) -> {ok, status()} | {error, error_map()}.
foreach(Argv, Fun) ->
    foreach(Argv, Fun, []).

%% @doc Runs `Argv' and calls `Fun(Element)' on each piece of its output as it comes,
%% with back-pressure, as `lists:foreach/2' does over a list: `fold/4' without an
%% accumulator. Returns `{ok, Status}' for every exit status, or `{error, Map}'; takes
%% the options of `fold/4'.
-spec foreach(command(), fun((element()) -> term()), options()) ->
    {ok, status()} | {error, error_map()}.
foreach(Argv, Fun, Opts) ->
    Args = [Argv, Fun, Opts],
    Folded = ?FUN_EXCEPTIONS(?CHECKED(Args, foreach_checked(Argv, Fun, Opts))),
    case Folded of
        {ok, ok, Status} -> {ok, Status};
        {error, Error} -> {error, maps:remove(acc, Error)}
    end.

fold_checked(Argv, Fun, Acc0, Opts, Who) when is_function(Fun, 2) ->
    Command = sluice_terms:argv(Argv),
    StreamOpts = sluice_terms:fold_options(Opts),
    % Checked here, so that a mistake names this function and not sluice:stream/2.
    _ = 'Elixir.Sluice.Options':'validate!'(StreamOpts, stream, list_to_binary(Who)),
    Stream = 'Elixir.Sluice':stream(Command, StreamOpts),
    % One element at a time: the stream is suspended after each, so that the accumulator
    % is known when the stream raises.
    Reducer = fun
        ({exit, Status}, {folding, Acc}) -> {suspend, {exited, Status, Acc}};
        (Element, {folding, Acc}) -> {suspend, {folding, apply_fold_fun(Fun, Element, Acc)}}
    end,
    fold_steps(fun(Command1) -> 'Elixir.Enumerable':reduce(Stream, Command1, Reducer) end,
        {folding, Acc0});
fold_checked(_Argv, _Fun, _Acc0, _Opts, _Who) ->
    sluice_terms:badarg('fun', <<"expected a fun of two arguments">>).

foreach_checked(Argv, Fun, Opts) when is_function(Fun, 1) ->
    Each = fun(Element, ok) ->
        _ = Fun(Element),
        ok
    end,
    fold_checked(Argv, Each, ok, Opts, "sluice:foreach/3");
foreach_checked(_Argv, _Fun, _Opts) ->
    sluice_terms:badarg('fun', <<"expected a fun of one argument">>).

fold_steps(Continue, State) ->
    try Continue({cont, State}) of
        {suspended, Next, More} -> fold_steps(More, Next);
        % The stream halts itself after its last element, the exit.
        {_DoneOrHalted, {exited, Status, Acc}} -> {ok, Acc, Status}
    catch
        error:#{'__struct__' := 'Elixir.Sluice.Error'} = Error ->
            {folding, Acc} = State,
            {error, (sluice_terms:error_map(Error))#{acc => Acc}}
    end.

% An exception of the caller's fun leaves the stream (which stops the program on the
% way) tagged, so that neither ?CHECKED nor fold_steps mistakes it for one of Sluice's.
apply_fold_fun(Fun, Element, Acc) ->
    try
        Fun(Element, Acc)
    catch
        Class:Reason:Stack -> throw({?MODULE, fun_raised, Class, Reason, Stack})
    end.

%%% A process per program

%% @doc Starts `Argv' without a link; see `start_link/2'.
-spec start(command()) -> {ok, pid()} | {error, error_map()}.
start(Argv) ->
    start(Argv, []).

%% @doc Like `start_link/2', without the link; the caller is still the owner.
-spec start(command(), options()) -> {ok, pid()} | {error, error_map()}.
start(Argv, Opts) ->
    Args = [Argv, Opts],
    sluice_terms:reply(
        ?CHECKED(Args, ?ELIXIR_PROCESS:start(sluice_terms:argv(Argv), sluice_terms:options(Opts)))
    ).

%% @doc Starts `Argv' linked to the caller; see `start_link/2'.
-spec start_link(command()) -> {ok, pid()} | {error, error_map()}.
start_link(Argv) ->
    start_link(Argv, []).

%% @doc Starts `Argv' as a process linked to the caller, which becomes its owner.
%%
%% Returns once the program runs (after its `exec'). Options include `{cd, Dir}',
%% `{env, [{Name, Value | false}]}', `clear_env', `{stderr, console | null | stdout |
%% consume}', `{kill_signal, sigterm}', `{kill_grace, Ms}', `{pipe_size, Bytes}' and
%% `{start_timeout, Ms}'.
-spec start_link(command(), options()) -> {ok, pid()} | {error, error_map()}.
start_link(Argv, Opts) ->
    Args = [Argv, Opts],
    sluice_terms:reply(
        ?CHECKED(
            Args, ?ELIXIR_PROCESS:start_link(sluice_terms:argv(Argv), sluice_terms:options(Opts))
        )
    ).

%% @doc Writes `IoData' to the program's stdin; returns once the program took it all.
-spec send(process(), iodata()) -> ok | {error, atom()}.
send(P, IoData) ->
    ?CHECKED([P, IoData], ?ELIXIR_PROCESS:write(P, IoData)).

%% @doc Like `send/2', within `Timeout' ms: `{error, {timeout, BytesWritten}}' after it.
-spec send(process(), iodata(), timeout()) ->
    ok | {error, atom() | {timeout, non_neg_integer()}}.
send(P, IoData, Timeout) ->
    ?CHECKED([P, IoData, Timeout], ?ELIXIR_PROCESS:write(P, IoData, Timeout)).

%% @doc Reads up to `Max' bytes of stdout, waiting as long as it takes; see `recv/3'.
-spec recv(process(), non_neg_integer()) ->
    {ok, binary() | {eol | noeol, binary()}} | eof | {error, atom()}.
recv(P, Max) ->
    ?CHECKED([P, Max], ?ELIXIR_PROCESS:read(P, sluice_terms:max_bytes(Max))).

%% @doc Reads up to `Max' bytes of stdout (`0' means whatever is there, up to 64 KiB),
%% returning as soon as any data is available; `eof' once stdout is closed and read.
%% With `{framing, {packet, N}}' it returns one whole frame (and `Max' is ignored), with
%% `{framing, {line, L}}' one `{eol | noeol, Line}', as a port does.
-spec recv(process(), non_neg_integer(), timeout()) ->
    {ok, binary() | {eol | noeol, binary()}} | eof | {error, atom()}.
recv(P, Max, Timeout) ->
    Args = [P, Max, Timeout],
    ?CHECKED(Args, ?ELIXIR_PROCESS:read(P, sluice_terms:max_bytes(Max), Timeout)).

%% @doc Reads up to `Max' bytes of stderr; needs `{stderr, consume}'.
-spec recv_stderr(process(), non_neg_integer(), timeout()) ->
    {ok, binary()} | eof | {error, atom()}.
recv_stderr(P, Max, Timeout) ->
    Args = [P, Max, Timeout],
    ?CHECKED(Args, ?ELIXIR_PROCESS:read_stderr(P, sluice_terms:max_bytes(Max), Timeout)).

%% @doc Closes the program's stdin alone: it sees end of input, its output can still be
%% read. On a terminal (`pty') the terminal's EOF character is sent instead; a terminal in
%% raw mode, or with its VEOF disabled, has no end of input: `{error, Map}' with reason
%% `raw_terminal' or `no_eof', nothing is written and stdin stays open.
-spec close_stdin(process()) -> ok | {error, closed | nodedown | timeout | error_map()}.
close_stdin(P) ->
    ?CHECKED([P], sluice_terms:reply(?ELIXIR_PROCESS:close_stdin(P))).

%% @doc Sends a signal (`sigterm', `sigint', ... or a number) to the program's process
%% group.
-spec signal(process(), atom() | pos_integer()) -> ok | {error, atom()}.
signal(P, Signal) ->
    ?CHECKED([P, Signal], ?ELIXIR_PROCESS:signal(P, Signal)).

%% @doc Stops the program with its own grace (its `kill_grace' option, 5 seconds by
%% default); see `stop/2'.
-spec stop(process()) -> {ok, status()} | {error, closed | error_map()}.
stop(P) ->
    sluice_terms:reply(?CHECKED([P], ?ELIXIR_PROCESS:stop(P))).

%% @doc Stops the program: closes stdin, sends its `kill_signal' (SIGTERM) to the process
%% group, SIGKILL after `GraceMs', and returns the exit status.
-spec stop(process(), non_neg_integer()) -> {ok, status()} | {error, closed | error_map()}.
stop(P, GraceMs) ->
    sluice_terms:reply(?CHECKED([P, GraceMs], ?ELIXIR_PROCESS:stop(P, GraceMs))).

%% @doc Waits for the program's exit status, as long as it takes.
-spec await_exit(process()) -> {ok, status()} | {error, closed | helper_down}.
await_exit(P) ->
    ?CHECKED([P], ?ELIXIR_PROCESS:await_exit(P)).

%% @doc Waits up to `Timeout' ms for the program's exit status.
-spec await_exit(process(), timeout()) ->
    {ok, status()} | {error, timeout | closed | helper_down}.
await_exit(P, Timeout) ->
    ?CHECKED([P, Timeout], ?ELIXIR_PROCESS:await_exit(P, Timeout)).

%% @doc The program's OS pid (also its process group id); works for a daemon too.
-spec os_pid(process()) -> pos_integer() | {error, closed | nodedown | timeout}.
os_pid(P) ->
    ?CHECKED([P], ?ELIXIR_PROCESS:os_pid(P)).

%% @doc What the program has cost so far, waiting up to 5 seconds; see `stats/2'.
-spec stats(process()) -> {ok, stats()} | {error, atom()}.
stats(P) ->
    stats_reply(?CHECKED([P], ?ELIXIR_PROCESS:stats(P))).

%% @doc What the program has cost so far: `usage' (`cpu_user_us', `cpu_system_us',
%% `max_rss_kb' and their `source', `cgroup' or `rusage', as in `run/2''s result),
%% `pids_current' (the members of its cgroup, else of its process group), `bytes_read'
%% and `bytes_written' through its pipes, and `age_ms'. Once the program has exited (and
%% until its process ends), the exit's usage, `pids_current' 0, `core_dumped' and
%% `statuses'. `{error, managed}' for an adopted process; `{error, timeout}' when the
%% helper program did not answer within `Timeout' ms (never more than 5 seconds).
-spec stats(process(), timeout()) -> {ok, stats()} | {error, atom()}.
stats(P, Timeout) ->
    stats_reply(?CHECKED([P, Timeout], ?ELIXIR_PROCESS:stats(P, Timeout))).

stats_reply({ok, #{usage := _} = Stats}) -> {ok, sluice_terms:stats(Stats)};
stats_reply(Error) -> Error.

%% @doc Sets options of a running program, as `inet:setopts/2' does: `{active, once}',
%% `{active, N}' (then `{sluice_passive, P}') or `{active, false}'. `{active, true}' is
%% refused: it would have no back-pressure.
-spec setopts(process(), [{active, once | pos_integer() | false}]) -> ok | {error, closed}.
setopts(P, Opts) ->
    ?CHECKED([P, Opts], setopts_checked(P, Opts)).

setopts_checked(P, Opts) when is_list(Opts) ->
    Checked = sluice_terms:proper_list(options, Opts, <<"setopts/2 expects a list of options">>),
    lists:foldl(fun(Opt, ok) -> setopt(P, Opt); (_Opt, Error) -> Error end, ok, Checked);
setopts_checked(_P, _Opts) ->
    sluice_terms:badarg(options, <<"setopts/2 expects a list of options">>).

setopt(_P, {active, true}) ->
    sluice_terms:badarg(active, <<"{active, true} has no back-pressure: use once or a count N">>);
setopt(P, {active, Mode}) ->
    ?ELIXIR_PROCESS:set_active(P, Mode);
setopt(_P, Other) ->
    sluice_terms:badarg(
        sluice_terms:option_name(Other), <<"setopts/2 takes only {active, once | N | false}">>
    ).

%% @doc Makes `Pid' the receiver of the active-mode messages; only the current
%% controlling process may hand them over (else `{error, not_owner}').
-spec controlling_process(process(), pid()) -> ok | {error, not_owner | closed | nodedown | timeout}.
controlling_process(P, Pid) ->
    ?CHECKED([P, Pid], controlling_process_checked(P, Pid)).

controlling_process_checked(P, Pid) when is_pid(Pid) ->
    ?ELIXIR_PROCESS:controlling_process(P, Pid);
controlling_process_checked(_P, _Pid) ->
    sluice_terms:badarg(pid, <<"controlling_process/2 hands the messages to a pid">>).

%% @doc Sets the terminal size of a program started with `pty' (`TIOCSWINSZ'); the kernel
%% sends SIGWINCH to its foreground process group. `{error, not_a_terminal}' for a
%% program on pipes.
-spec set_window_size(process(), pos_integer(), pos_integer()) -> ok | {error, atom()}.
set_window_size(P, Rows, Cols) ->
    ?CHECKED([P, Rows, Cols], ?ELIXIR_PROCESS:set_window_size(P, Rows, Cols)).

%% @doc Changes the modes of a program's terminal (`pty') while it runs, with the names
%% of the `pty' option's `modes' (`[{echo, 0}, {icanon, 1}]'), at once (`TCSANOW'). A
%% mode the terminal refuses is `{error, Map}' naming it (the others stay set);
%% `{error, not_a_terminal}' for a program on pipes, `{error, closed}' once the terminal
%% has reached its end.
-spec set_terminal_modes(process(), [{atom(), non_neg_integer()}]) ->
    ok | {error, atom() | error_map()}.
set_terminal_modes(P, Modes) ->
    ?CHECKED([P, Modes], sluice_terms:reply(?ELIXIR_PROCESS:set_terminal_modes(P, Modes))).

%% @doc Stops reading one output (`stdout' or `stderr') and closes it before its end: the
%% program's next write there fails with EPIPE (SIGPIPE, unless it ignores it). Later
%% reads of it give `eof'. `{error, not_piped | not_captured}' for an output that is no
%% pipe, `{error, terminal}' for a terminal's output (closing it would hang it up).
-spec close_output(process(), stdout | stderr) -> ok | {error, atom()}.
close_output(P, Output) ->
    ?CHECKED([P, Output], ?ELIXIR_PROCESS:close_output(P, Output)).

%%% Adopting and listing

%% @doc Adopts an OS process that Sluice did not start; see `manage/2'.
-spec manage(pos_integer()) -> {ok, pid()} | {error, error_map()}.
manage(OsPid) ->
    manage(OsPid, []).

%% @doc Adopts an OS process that Sluice did not start, as a process owned by the caller:
%% `signal/2', `stop/2', `await_exit/2' and `os_pid/1' work on it; signals go through a
%% pidfd, so they never reach a reused pid. Its exit status cannot be known by a
%% non-parent: `await_exit/2' and `stop/2' give `{ok, unknown}'. Options:
%% `{stop_on_owner_exit, boolean()}' (default `true'), `group' (signal its process
%% group too), `{kill_signal, Sig}', `{kill_grace, Ms}', `{start_timeout, Ms}'.
%% pid 1, the VM and the helper program are a badarg; a missing process is
%% `{error, #{reason := esrch}}', one the node may not signal `eperm'.
-spec manage(pos_integer(), options()) -> {ok, pid()} | {error, error_map()}.
manage(OsPid, Opts) ->
    Args = [OsPid, Opts],
    sluice_terms:reply(?CHECKED(Args, ?ELIXIR_PROCESS:manage(OsPid, sluice_terms:options(Opts)))).

%% @doc Every program of this node, oldest first: started by any function of Sluice, or
%% adopted. `pid' is the process that holds it (the `start_link/2' process, or the caller
%% of `run/2'), `started_at' is in milliseconds of `erlang:system_time/1', `cgroup' the
%% program's own cgroup directory or `undefined'. For a pipeline, `os_pid' and `argv' are
%% its first stage's and `pipeline' is every stage's argv in order (else `undefined').
-spec list() -> [program_info()].
list() ->
    [sluice_terms:program_info(Entry) || Entry <- 'Elixir.Sluice':list()].

%% @doc Stops a program of this node from any process: `Program' is an entry of `list/0'
%% or an OS pid. See `stop_program/2'.
-spec stop_program(program_info() | pos_integer()) -> ok | {error, not_found}.
stop_program(Program) ->
    stop_program(Program, []).

%% @doc Stops a program of this node from any process, the way its owner's own stop
%% would: its `kill_signal', SIGKILL after its `kill_grace' (`Opts' may give
%% `{kill_signal, Sig}' and `{kill_grace, Ms}' instead). Returns without waiting for the
%% exit; the owner gets its usual answer (for `run/2', a status by signal). `Program' is
%% an entry of `list/0' or an OS pid (the newest program with that pid);
%% `{error, not_found}' when no running program matches.
-spec stop_program(program_info() | pos_integer(), options()) -> ok | {error, not_found}.
stop_program(Program, Opts) ->
    Args = [Program, Opts],
    ?CHECKED(Args, 'Elixir.Sluice':stop(Program, sluice_terms:options(Opts))).

%% @doc What `list/0' shows for one program.
-spec info(process()) -> program_info() | {error, closed | nodedown | timeout}.
info(P) ->
    case ?CHECKED([P], ?ELIXIR_PROCESS:info(P)) of
        #{os_pid := _} = Entry -> sluice_terms:program_info(Entry);
        Error -> Error
    end.

%%% Daemons

%% @doc A child spec for a long-lived program under a supervisor: each line it writes
%% goes to `logger' (`{log, Level | false}'), and when it exits the daemon exits with
%% `normal' after exit 0, else `{program_exited, Status}', so the supervisor restarts it
%% (a `transient' child only after a failure). Options: those of `start_link/2' except
%% `stderr', plus `{name, Name | {local, Name}}', `{id, Id}', `{log, Level}' (or
%% `[{stdout, Level}, {stderr, Level}]'), `{log_prefix, Binary}', `{log_metadata, List}',
%% `{log_transform, Fun}', `{exit_reason, Fun}' and `{max_line_length, Bytes}' (see
%% `Sluice.Daemon'). They are checked here: a mistake is a
%% `badarg' naming the option now, not a failure when the supervisor starts the child.
-spec daemon_spec(command(), options()) -> supervisor:child_spec().
daemon_spec(Argv, Opts) ->
    Args = [Argv, Opts],
    Spec = ?CHECKED(
        Args, 'Elixir.Sluice.Daemon':child_spec(sluice_terms:daemon_options(Argv, Opts))
    ),
    Spec#{start => {?MODULE, start_daemon, [Argv, Opts]}}.

%% @doc Starts a daemon linked to the caller (the `start' of `daemon_spec/2').
-spec start_daemon(command(), options()) -> {ok, pid()} | {error, term()}.
start_daemon(Argv, Opts) ->
    Args = [Argv, Opts],
    ?CHECKED(Args, 'Elixir.Sluice.Daemon':start_link(sluice_terms:daemon_options(Argv, Opts))).

%%% Kernel pipelines

%% @doc A kernel pipeline: each stage's stdout feeds the next one's stdin through a pipe
%% the helper program makes (no byte passes through the VM, no shell is involved). A
%% stage is an argv or `{Argv, Opts}' with its own `cd', `env' and `stderr'. `run/2',
%% `start_link/2' and `start/2' take a pipeline where they take argv: input goes to the
%% first stage, output comes from the last; `statuses' in the result has every stage's
%% status, and `{pipefail, false}' checks only the last one.
-spec pipeline([argv() | {argv(), options()}, ...]) -> pipeline().
pipeline(Stages) ->
    ?CHECKED([Stages], 'Elixir.Sluice':pipeline(sluice_terms:stages(Stages))).

%%% Workers

%% @doc Starts a request/response program (`Sluice.Worker') linked to the caller: each
%% `call/3' writes one frame and returns the next frame the program writes back, one
%% request at a time, in order. `{framing, {packet, 4}}' by default (`{line, Max}' too);
%% with `{use_stdio, false}' the program talks on fds 3 and 4 and its prints go to the
%% console. Options: those of `start_link/2' plus `{name, Name | {local, Name}}'. When
%% the program exits, waiting callers get `{error, {exit, Status}}' and the worker exits
%% with `{program_exited, Status}'.
-spec start_worker(command(), options()) -> {ok, pid()} | {error, error_map() | term()}.
start_worker(Argv, Opts) ->
    Args = [Argv, Opts],
    sluice_terms:reply(
        ?CHECKED(
            Args,
            'Elixir.Sluice.Worker':start_link(
                sluice_terms:argv(Argv), sluice_terms:worker_options(Opts)
            )
        )
    ).

%% @doc A child spec for a worker under a supervisor (its `start' is `start_worker/2').
%% The options are checked here, as `start_worker/2' checks them: a mistake is a `badarg'
%% naming the option.
-spec worker_spec(command(), options()) -> supervisor:child_spec().
worker_spec(Argv, Opts) ->
    Args = [Argv, Opts],
    Spec = ?CHECKED(
        Args,
        'Elixir.Sluice.Worker':child_spec(
            [{argv, sluice_terms:argv(Argv)} | sluice_terms:worker_options(Opts)]
        )
    ),
    Spec#{start => {?MODULE, start_worker, [Argv, Opts]}}.

%% @doc Sends `Request' to a worker and waits up to 5 seconds; see `call/3'.
-spec call(process(), iodata()) -> {ok, term()} | {error, term()}.
call(Worker, Request) ->
    ?CHECKED([Worker, Request], 'Elixir.Sluice.Worker':call(Worker, Request)).

%% @doc Sends `Request' as one frame and returns the program's response frame, or
%% `{error, timeout}' (the worker stays usable: the late response is discarded),
%% `{error, {exit, Status}}' or `{error, closed}'.
-spec call(process(), iodata(), timeout()) -> {ok, term()} | {error, term()}.
call(Worker, Request, Timeout) ->
    ?CHECKED([Worker, Request, Timeout], 'Elixir.Sluice.Worker':call(Worker, Request, Timeout)).

%%% Errors

%% @doc Readable text for an error: an error map of `{error, Map}', or a reason atom of
%% a call (`closed', `timeout', `helper_down', `epipe', `active', `not_owner', ...).
-spec format_error(error_map() | atom() | {timeout, non_neg_integer()}) -> string().
format_error(#{message := Message, reason := Reason} = Error) ->
    Stage =
        case Error of
            #{stage := S} -> io_lib:format(", at stage ~p", [S]);
            #{} -> ""
        end,
    lists:flatten(io_lib:format("~ts (~p~s)", [Message, Reason, Stage]));
format_error(closed) ->
    "the program's Sluice process has ended";
format_error(timeout) ->
    "timed out";
format_error({timeout, Written}) ->
    lists:flatten(io_lib:format("timed out after writing ~b bytes", [Written]));
format_error(helper_down) ->
    "the node's helper program died: the program was killed";
format_error(epipe) ->
    "the program closed its stdin";
format_error(line_too_long) ->
    "a line longer than the terminal holds (4,095 bytes), and no VEOF to hand it over with";
format_error(active) ->
    "the process is in active mode: output comes as messages";
format_error(not_owner) ->
    "only the controlling process may do this";
format_error(not_captured) ->
    "stderr is read only with {stderr, consume}";
format_error(Other) ->
    lists:flatten(io_lib:format("~p", [Other])).

%% @doc Explains a `badarg' raised by this module, for the shell and `erl_error'
%% (OTP's `error_info' convention).
-spec format_error(term(), erlang:stacktrace()) -> #{pos_integer() | general => string()}.
format_error({badarg, What, Message}, [{?MODULE, _Fun, Args, _Info} | _]) when is_list(Args) ->
    #{argument_position(What, Args) => unicode:characters_to_list(Message)};
format_error({badarg, _What, Message}, _Stack) ->
    #{general => unicode:characters_to_list(Message)};
format_error(_Reason, _Stack) ->
    #{}.

% Options are the last argument of every call that takes them; argv (or the process, the
% worker, the OS pid to adopt) is the first; the fun of fold/4 and foreach/3, the data of
% send/3 and call/3, the signal of signal/2 and the Max of recv/3 the second.
argument_position(What, _Args) when
    What =:= argv; What =:= process; What =:= worker; What =:= os_pid
->
    1;
argument_position(What, _Args) when
    What =:= 'fun'; What =:= data; What =:= request; What =:= signal; What =:= max
->
    2;
argument_position(_Option, Args) ->
    length(Args).
