%% @private
%% @doc Translation between the Erlang face (`sluice') and the Elixir API, its one job:
%% Erlang arguments in (strings, proplists, maps, `false' and `undefined') as the Elixir
%% API's terms (binaries, keyword lists, `nil'); Elixir results out (`Sluice.Result',
%% `Sluice.Error', `nil') as Erlang maps with `undefined'.
%%
%% A mistake found on the way is thrown by `badarg/2'; `sluice' catches it and raises it
%% from the API function that was called, as it does `mistake/3' of an `ArgumentError'
%% of the Elixir API (from the `Sluice.OptionError' it carries: no message is parsed).
-module(sluice_terms).

-export([badarg/2, mistake/3, proper_list/3]).
-export([argv/1, stages/1, options/1, option_name/1, max_bytes/1]).
-export([run_options/1, fold_options/1, daemon_options/2, worker_options/1]).
-export([reply/1, error_map/1, program_info/1, stats/1]).

% The Elixir API's options: a keyword list.
-type keywords() :: [{atom(), term()}].
% The Elixir API's argv: UTF-8 binaries, or a pipeline.
-type elixir_command() :: [binary(), ...] | sluice:pipeline().

%%% Mistakes

%% @doc Throws a mistake in the arguments, about `What' (an option or an argument), for
%% `sluice' to raise as `error:{badarg, What, Message}' from the API function.
-spec badarg(atom(), binary()) -> no_return().
badarg(What, Message) ->
    throw({?MODULE, badarg, What, Message}).

%% @doc The `badarg' reason of an `ArgumentError' of the Elixir API, raised with
%% `Stack' in a call of `Function' of `sluice': the option or argument of the
%% `Sluice.OptionError' it carries (its fields, never its message, say what it is about),
%% and a message in Erlang's words derived from its fields. An `ArgumentError' that
%% carries none (not a mistake Sluice checked) is about `badarg', with its message.
-spec mistake(#{message := binary(), atom() => term()}, list(), {atom(), arity()}) ->
    {badarg, atom(), binary()}.
mistake(#{message := Message}, Stack, Function) ->
    case 'Elixir.Sluice.OptionError':from_stacktrace(Stack) of
        {ok, #{option := Option} = Error} -> {badarg, Option, erlang_message(Error, Function)};
        error -> {badarg, badarg, Message}
    end.

% The words of each kind of mistake (Sluice.OptionError), for a call of Function of
% sluice: options and atoms as Erlang writes them, values as ~p shows them. What was
% expected is the Elixir API's phrase (Sluice.Options).
erlang_message(#{kind := Kind, option := Option, value := Value, expected := Expected}, Function) ->
    {Name, Arity} = Function,
    Who = io_lib:format("sluice:~ts/~b", [Name, Arity]),
    Text =
        case Kind of
            invalid ->
                io_lib:format("invalid value for option ~ts: expected ~ts, got: ~0tP",
                    [Option, Expected, Value, 10]);
            unknown ->
                Known = lists:join(", ", [atom_to_binary(Key) || Key <- Expected]),
                Hint =
                    case 'Elixir.Sluice.OptionError':suggestion(Option, Expected) of
                        nil -> "";
                        Near -> io_lib:format(" did you mean ~ts?", [Near])
                    end,
                io_lib:format("unknown option ~ts for ~ts;~ts known options: ~ts",
                    [Option, Who, Hint, Known]);
            duplicate ->
                io_lib:format("option ~ts given more than once to ~ts", [Option, Who]);
            refused ->
                io_lib:format("~ts does not take the option ~ts: ~ts", [Who, Option, Expected]);
            missing ->
                io_lib:format("~ts needs the option ~ts", [Who, Option]);
            options ->
                io_lib:format("~ts expects a proplist or a map of options, got: ~0tP",
                    [Who, Value, 10]);
            argument ->
                io_lib:format("~ts must be ~ts, got: ~0tP", [Option, Expected, Value, 10]);
            config ->
                io_lib:format("invalid value for ~ts in the sluice application's environment: "
                    "expected ~ts, got: ~0tP", [Option, Expected, Value, 10])
        end,
    unicode:characters_to_binary(Text).

%%% Erlang arguments in

%% @doc argv: a list of strings or binaries, each becoming a UTF-8 binary; or a pipeline.
-spec argv(term()) -> elixir_command().
argv(#{'__struct__' := 'Elixir.Sluice.Pipeline'} = Pipeline) ->
    Pipeline;
argv(Argv) when is_list(Argv), Argv =/= [] ->
    % One string ("echo hi"): argv is a list of them, one per argument.
    io_lib:printable_unicode_list(Argv) andalso badarg(argv, one_string(Argv)),
    Args = proper_list(argv, Argv, <<"argv must be a non-empty proper list of strings or binaries">>),
    [chars(argv, Arg) || Arg <- Args];
argv(_Argv) ->
    badarg(argv, <<"argv must be a non-empty list of strings or binaries">>).

% The message of an argv written as one string: the argv to write instead.
one_string(Line) ->
    Words = string:lexemes(Line, " \t\n"),
    Shell = lists:any(fun(C) -> lists:member(C, "|&;<>()$`\\\"'*?[#\n") end, Line),
    Text =
        case {Words, Shell} of
            {[], _} ->
                "argv is a list of strings, one per argument, not one string";
            {_, true} ->
                io_lib:format(
                    "argv is a list of strings, one per argument, not one string (no shell "
                    "splits it); for a shell command line, run a shell: [\"sh\", \"-c\", ~0tp]",
                    [Line]);
            {_, false} ->
                io_lib:format(
                    "argv is a list of strings, one per argument, not one string (no shell "
                    "splits it): ~ts",
                    [["[", lists:join(", ", [io_lib:format("~0tp", [W]) || W <- Words]), "]"]])
        end,
    unicode:characters_to_binary(Text).

chars(_What, Chars) when is_binary(Chars) ->
    Chars;
chars(What, Chars) when is_list(Chars) ->
    % characters_to_binary/1 returns a tuple for bad encodings, and raises badarg for
    % what is no character at all (an atom in the list, a negative number).
    try unicode:characters_to_binary(Chars) of
        Binary when is_binary(Binary) -> Binary;
        _ -> badarg(What, <<"expected a string (a list of characters) or a binary">>)
    catch
        error:badarg -> badarg(What, <<"expected a string (a list of characters) or a binary">>)
    end;
chars(What, _Other) ->
    badarg(What, <<"expected a string (a list of characters) or a binary">>).

%% @doc The stages of `sluice:pipeline/1': each an argv or `{Argv, Opts}'.
-spec stages(term()) -> [elixir_command() | {elixir_command(), keywords()}, ...].
stages(Stages) when is_list(Stages), Stages =/= [] ->
    [stage(Stage) || Stage <- proper_list(stages, Stages, <<"a pipeline is a proper list of stages">>)];
stages(_Stages) ->
    badarg(stages, <<"a pipeline is a non-empty list of stages">>).

stage({Argv, Opts}) -> {argv(Argv), options(Opts)};
stage(Argv) -> argv(Argv).

%% @doc A proplist (bare atoms mean true) or a map, to the Elixir API's keyword list.
-spec options(term()) -> keywords().
options(Opts) when is_map(Opts) ->
    options(maps:to_list(Opts));
options(Opts) when is_list(Opts) ->
    [option(Opt) || Opt <- proper_list(options, Opts, <<"options must be a proplist or a map">>)];
options(_Opts) ->
    badarg(options, <<"options must be a proplist or a map">>).

option(Key) when is_atom(Key) -> {Key, true};
option({env, Env}) -> {env, env(Env)};
option({cd, Dir}) -> {cd, chars(cd, Dir)};
% Files of stdin, stdout and stderr: {file, Path} or {file, Path, [append | {mode, M}]}.
option({Key, {file, Path}}) when Key =:= stdin; Key =:= stdout; Key =:= stderr ->
    {Key, {file, chars(Key, Path)}};
option({Key, {file, Path, FileOpts}}) when
    (Key =:= stdout orelse Key =:= stderr), is_list(FileOpts)
->
    FileOptions = proper_list(Key, FileOpts, <<"file options must be a proplist">>),
    {Key, {file, chars(Key, Path), [bare_option(O) || O <- FileOptions]}};
option({Key, Name}) when
    (Key =:= user orelse Key =:= group orelse Key =:= arg0), is_list(Name)
->
    {Key, chars(Key, Name)};
option({kill_command, Argv}) when is_list(Argv) ->
    Args = proper_list(kill_command, Argv, <<"kill_command must be a proper list of strings">>),
    {kill_command, [chars(kill_command, A) || A <- Args]};
option({pty, Terminal}) when is_list(Terminal) ->
    Settings = proper_list(pty, Terminal, <<"pty settings must be a proplist">>),
    {pty, [pty_option(T) || T <- Settings]};
option({Key, undefined}) when is_atom(Key) -> {Key, nil};
option({Key, Value}) when is_atom(Key) -> {Key, Value};
option(Other) -> badarg(option_name(Other), <<"options are atoms or {Name, Value} pairs">>).

bare_option(Key) when is_atom(Key) -> {Key, true};
bare_option(Other) -> Other.

% pty: [echo, {rows, 40}, {modes, [{icanon, 0}]}]: a bare atom means true here too.
pty_option(Key) when is_atom(Key) -> {Key, true};
pty_option(Other) -> Other.

%% @doc `List' if it is a proper list, else a mistake about `What' (`Message').
-spec proper_list(atom(), list(), binary()) -> list().
proper_list(What, List, Message) ->
    case proper(List) of
        true -> List;
        false -> badarg(What, Message)
    end.

proper([]) -> true;
proper([_ | Tail]) -> proper(Tail);
proper(_) -> false.

%% @doc The name a mistake in an option is about: its key, else `options'.
-spec option_name(term()) -> atom().
option_name({Key, _}) when is_atom(Key) -> Key;
option_name(_) -> options.

% {env, [{Name, Value | false}]}: OTP's convention, false unsets.
env(Env) when is_map(Env) ->
    env(maps:to_list(Env));
env(Env) when is_list(Env) ->
    Pairs = proper_list(env, Env, <<"env must be a list of {Name, Value | false}">>),
    [env_pair(Pair) || Pair <- Pairs];
env(_Env) ->
    badarg(env, <<"env must be a list of {Name, Value | false}">>).

env_pair({Name, false}) -> {env_name(Name), nil};
env_pair({Name, Value}) -> {env_name(Name), chars(env, Value)};
env_pair(_Other) -> badarg(env, <<"env must be a list of {Name, Value | false}">>).

env_name(Name) when is_atom(Name) -> atom_to_binary(Name, utf8);
env_name(Name) -> chars(env, Name).

%% @doc The options of `sluice:run/2' (and of streams): those of `options/1', with
%% `{input, IoData}' flattened.
-spec run_options(term()) -> keywords().
run_options(Opts) ->
    [input(Opt) || Opt <- options(Opts)].

% run's input: iodata in Erlang is a list of bytes and binaries; flatten it here, so a
% string is input text and not a list of elements.
input({input, Input}) when is_list(Input) ->
    try
        {input, iolist_to_binary(Input)}
    catch
        error:badarg -> badarg(input, <<"input must be iodata">>)
    end;
input(Opt) ->
    Opt.

%% @doc The stream options of `sluice:fold/4' and `sluice:foreach/3'; stderr that nobody
%% would see is a mistake.
-spec fold_options(term()) -> keywords().
fold_options(Opts) ->
    StreamOpts = run_options(Opts),
    ok = fold_stderr(proplists:get_value(stderr, StreamOpts)),
    StreamOpts.

fold_stderr(capture) ->
    badarg(stderr, <<"fold/4 and foreach/3 keep no stderr: use consume to get it as elements">>);
fold_stderr(_Stderr) ->
    ok.

%% @doc The options of `Sluice.Daemon', argv among them.
-spec daemon_options(term(), term()) -> keywords().
daemon_options(Argv, Opts) ->
    [{argv, argv(Argv)} | [registered_name(Opt) || Opt <- options(Opts)]].

%% @doc The options of `Sluice.Worker'.
-spec worker_options(term()) -> keywords().
worker_options(Opts) ->
    [registered_name(Opt) || Opt <- options(Opts)].

% Elixir names a registered process by the bare atom.
registered_name({name, {local, Name}}) -> {name, Name};
registered_name(Opt) -> Opt.

%% @doc `recv/3''s `Max': `0' means whatever is there, up to 64 KiB.
-spec max_bytes(non_neg_integer()) -> non_neg_integer().
max_bytes(0) -> 65536;
max_bytes(Max) -> Max.

%%% Elixir results out

%% @doc A reply of the Elixir API with `%Sluice.Result{}' and `{error, %Sluice.Error{}}'
%% as maps; any other reply as it is.
-spec reply(Reply) -> {ok, sluice:result()} | {error, sluice:error_map()} | Reply when
    Reply :: term().
reply({ok, #{'__struct__' := 'Elixir.Sluice.Result'} = Result}) -> {ok, result_map(Result)};
reply({error, #{'__struct__' := 'Elixir.Sluice.Error'} = Error}) -> {error, error_map(Error)};
reply(Other) -> Other.

result_map(#{status := Status, stdout := Stdout, stderr := Stderr, os_pid := OsPid} = R) ->
    #{
        status => Status,
        stdout => undefined(Stdout),
        stderr => undefined(Stderr),
        os_pid => undefined(OsPid),
        statuses => undefined(maps:get(statuses, R, nil)),
        core_dumped => maps:get(core_dumped, R, false),
        usage => undefined(maps:get(usage, R, nil))
    }.

%% @doc A `%Sluice.Error{}' as a map: `stage' and the partial `result' only when known.
-spec error_map('Elixir.Sluice.Error':t()) -> sluice:error_map().
error_map(#{reason := Reason, message := Message} = Error) ->
    Optional = [
        {stage, maps:get(stage, Error, nil)},
        {result, partial(maps:get(result, Error, nil))}
    ],
    Present = [KV || {_, V} = KV <- Optional, V =/= nil],
    maps:from_list([{reason, Reason}, {message, Message} | Present]).

partial(#{'__struct__' := 'Elixir.Sluice.Result'} = Result) -> result_map(Result);
partial(Other) -> Other.

%% @doc An entry of the Elixir API's list of programs, as `sluice:list/0' shows it.
-spec program_info('Elixir.Sluice.Process':info()) -> sluice:program_info().
program_info(#{started_at := Started, cgroup := Cgroup, pipeline := Pipeline} = Entry) ->
    Entry#{
        started_at := 'Elixir.DateTime':to_unix(Started, millisecond),
        cgroup := undefined(Cgroup),
        pipeline := undefined(Pipeline)
    }.

%% @doc The stats of the Elixir API, as `sluice:stats/2' gives them.
-spec stats(#{usage := map() | nil, atom() => term()}) -> sluice:stats().
stats(#{usage := Usage} = Stats) ->
    Stats#{usage := undefined(Usage)}.

undefined(nil) -> undefined;
undefined(Value) -> Value.
