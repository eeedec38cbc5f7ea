%% @doc The Erlang tests' leak checks, like Sluice.Case for the Elixir ones: after each
%% test the helper program has no children left, there are no zombies, and the VM's fds
%% are back to what they were.
-module(sluice_probe).
-export([start/0, fds/0, check/1, alive/1, state/1, eventually/2]).

%% @doc Starts the application; returns the fd count to compare with after a test.
-spec start() -> non_neg_integer().
start() ->
    {ok, _} = application:ensure_all_started(sluice),
    true = eventually(fun() -> helper() =/= undefined end, 10000),
    fds().

%% @doc How many fds this VM has open.
-spec fds() -> non_neg_integer().
fds() ->
    {ok, Fds} = file:list_dir("/proc/self/fd"),
    length(Fds).

%% @doc Fails unless nothing is left of the test: no helper children, no zombies, and no
%% more fds than `Before'.
-spec check(non_neg_integer()) -> ok.
check(Before) ->
    Helper = helper(),
    case eventually(fun() -> children(Helper) =:= [] end, 7000) of
        true -> ok;
        false -> error({processes_left_behind, children(Helper)})
    end,
    case eventually(fun() -> zombies() =:= [] end, 1000) of
        true -> ok;
        false -> error({zombies_left_behind, zombies()})
    end,
    case eventually(fun() -> fds() =< Before end, 2000) of
        true -> ok;
        false -> error({fds_leaked, Before, fds()})
    end.

%% @doc Whether an OS process exists (and is not a zombie).
-spec alive(pos_integer()) -> boolean().
alive(OsPid) ->
    case stat(integer_to_list(OsPid)) of
        {_Ppid, State} -> State =/= "Z";
        undefined -> false
    end.

%% @doc An OS process's state letter (`"R"', `"S"', `"Z"', ...), or `undefined'.
-spec state(pos_integer()) -> string() | undefined.
state(OsPid) ->
    case stat(integer_to_list(OsPid)) of
        {_Ppid, State} -> State;
        undefined -> undefined
    end.

%% @doc Polls `Fun' every 20 ms until it returns true, for at most `Ms'.
-spec eventually(fun(() -> boolean()), integer()) -> boolean().
eventually(Fun, Ms) when Ms =< 0 ->
    Fun();
eventually(Fun, Ms) ->
    case Fun() of
        true ->
            true;
        false ->
            timer:sleep(20),
            eventually(Fun, Ms - 20)
    end.

% The helper program's OS pid, as a string (like the names under /proc).
helper() ->
    case 'Elixir.Sluice.Helper':info() of
        #{os_pid := Pid} when is_integer(Pid) -> integer_to_list(Pid);
        #{} -> undefined
    end.

children(undefined) -> [];
children(Helper) -> [Pid || Pid <- pids(), parent(Pid) =:= Helper].

% Zombies of this VM or of its helper program.
zombies() ->
    Parents = [os:getpid(), helper()],
    [Pid || Pid <- pids(), {Ppid, "Z"} <- [stat(Pid)], lists:member(Ppid, Parents)].

pids() ->
    {ok, Names} = file:list_dir("/proc"),
    [Name || Name <- Names, lists:all(fun(C) -> C >= $0 andalso C =< $9 end, Name)].

parent(Pid) ->
    case stat(Pid) of
        {Ppid, _} -> Ppid;
        undefined -> undefined
    end.

% {Ppid, State} from /proc/PID/stat; the command name may hold spaces and parentheses.
stat(Pid) ->
    case file:read_file("/proc/" ++ Pid ++ "/stat") of
        {ok, Stat} ->
            [_, After] = string:split(binary_to_list(Stat), ")", trailing),
            [State, Ppid | _] = string:lexemes(After, " "),
            {Ppid, State};
        {error, _} ->
            undefined
    end.
