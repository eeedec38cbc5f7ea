%% @doc The Erlang API, tested from Erlang against real programs (run by
%% scripts/erlang_test.sh in a plain `erl', no Mix). Each test runs in its own process
%% and is followed by sluice_probe's leak checks.
-module(sluice_tests).
-include_lib("eunit/include/eunit.hrl").

sluice_test_() ->
    Tests = [
        fun argv_as_strings_and_binaries/0,
        fun env_unset_with_false/0,
        fun bare_atom_and_map_options/0,
        fun run_statuses/0,
        fun run_errors/0,
        fun fold_chunks_and_lines/0,
        fun fold_tagged_stderr_and_frames/0,
        fun fold_statuses_and_input/0,
        fun fold_has_back_pressure_and_stops_early/0,
        fun fold_errors_carry_the_acc/0,
        fun fold_bad_arguments/0,
        fun foreach_each_line/0,
        fun stats_of_a_running_program/0,
        fun send_recv_close_stdin/0,
        fun recv_stderr/0,
        fun active_once/0,
        fun active_n_and_passive/0,
        fun framing_over_fds_3_and_4/0,
        fun a_worker_in_order/0,
        fun controlling_process/0,
        fun controlling_process_to_a_non_pid/0,
        fun stop_a_term_ignoring_shell/0,
        fun spawn_error_map/0,
        fun format_error_text/0,
        fun bad_arguments_name_the_option/0,
        fun badarg_explained_by_the_shell/0,
        fun bad_values_make_no_atoms/0,
        fun every_mistake_is_a_badarg/0,
        fun owner_death_kills_the_program/0,
        fun daemon_restarted_by_its_supervisor/0,
        fun child_specs_check_their_options/0,
        fun on_a_terminal/0,
        fun terminal_modes_while_running/0,
        fun close_one_output/0,
        fun stop_a_program_from_another_process/0,
        fun manage_an_external_process/0,
        fun list_shows_every_program/0,
        fun configured_from_sys_config/0,
        fun files_users_and_limits/0,
        fun a_kernel_pipeline/0
    ],
    {foreach, fun sluice_probe:start/0, fun sluice_probe:check/1,
        [{test_name(T), {timeout, 30, in_own_process(T)}} || T <- Tests]}.

test_name(Test) ->
    {name, Name} = erlang:fun_info(Test, name),
    atom_to_list(Name).

% A test's programs are owned by a process that ends with the test.
in_own_process(Test) ->
    fun() ->
        Self = self(),
        {Pid, Ref} = spawn_monitor(fun() -> Test(), Self ! {done, self()} end),
        receive
            {done, Pid} -> ok;
            {'DOWN', Ref, process, Pid, Reason} -> erlang:error(Reason)
        end,
        receive {'DOWN', Ref, process, Pid, _} -> ok end
    end.

argv_as_strings_and_binaries() ->
    {ok, #{status := 0, stdout := Out}} =
        sluice:run(["printf", <<"%s|%s|%s">>, "plain", <<"binary">>, "é ü"]),
    ?assertEqual(<<"plain|binary|", (unicode:characters_to_binary("é ü"))/binary>>, Out).

env_unset_with_false() ->
    os:putenv("SLUICE_ERL_GONE", "present"),
    Script = "echo ${SLUICE_ERL_GONE:-unset} $SLUICE_ERL_NEW",
    {ok, #{stdout := Before}} = sluice:run(["sh", "-c", Script]),
    ?assertEqual(<<"present\n">>, Before),
    Env = [{"SLUICE_ERL_GONE", false}, {"SLUICE_ERL_NEW", "new"}],
    {ok, #{stdout := After}} = sluice:run(["sh", "-c", Script], [{env, Env}]),
    ?assertEqual(<<"unset new\n">>, After),
    % Binaries and atoms as names work too.
    AtomEnv = [{env, [{'SLUICE_ERL_NEW', <<"b">>}]}],
    {ok, #{stdout := Atom}} = sluice:run(["sh", "-c", Script], AtomEnv),
    ?assertEqual(<<"present b\n">>, Atom),
    os:unsetenv("SLUICE_ERL_GONE").

bare_atom_and_map_options() ->
    % clear_env as a bare atom: only what env sets is there.
    {ok, #{stdout := Proplist}} = sluice:run(["/usr/bin/env"], [clear_env, {env, [{"A", "1"}]}]),
    ?assertEqual(<<"A=1\n">>, Proplist),
    MapOpts = #{clear_env => true, env => #{"B" => "2"}},
    {ok, #{stdout := Map}} = sluice:run(["/usr/bin/env"], MapOpts),
    ?assertEqual(<<"B=2\n">>, Map),
    % cd as a string, stderr merged.
    {ok, #{stdout := Merged, stderr := undefined}} =
        sluice:run(["sh", "-c", "pwd; echo err >&2"], [{cd, "/tmp"}, {stderr, stdout}]),
    ?assertEqual(<<"/tmp\nerr\n">>, Merged).

run_statuses() ->
    ?assertMatch({ok, #{status := 0, stdout := <<"out\n">>, stderr := <<"err\n">>}},
        sluice:run(["sh", "-c", "echo out; echo err >&2"])),
    ?assertMatch({ok, #{status := 3}}, sluice:run(["sh", "-c", "exit 3"])),
    ?assertMatch({ok, #{status := {signal, sigkill}}}, sluice:run(["sh", "-c", "kill -9 $$"])),
    {ok, #{os_pid := OsPid}} = sluice:run(["true"]),
    ?assert(is_integer(OsPid)),
    ?assertMatch({ok, #{stdout := <<"abcdef">>}},
        sluice:run(["cat"], [{input, ["abc", <<"def">>]}])).

run_errors() ->
    {error, Timeout} = sluice:run(["sh", "-c", "echo partial; sleep 10"], [{timeout, 300}]),
    ?assertMatch(#{reason := timeout, message := <<_/binary>>,
                   result := #{stdout := <<"partial\n">>, status := {signal, sigterm}}}, Timeout),
    ?assertNot(maps:is_key(stage, Timeout)),
    {error, TooMuch} = sluice:run(["yes"], [{max_output, 1000}]),
    ?assertMatch(#{reason := max_output, result := #{stdout := <<_/binary>>}}, TooMuch),
    ?assertMatch({error, #{reason := enoent, stage := chdir}},
        sluice:run(["true"], [{cd, "/no/such/dir"}])),
    % node: passes by name; an unreachable node is nodedown, this node runs it here.
    ?assertMatch({error, #{reason := nodedown}},
        sluice:run(["true"], [{node, 'nobody@127.0.0.1'}])),
    ?assertMatch({error, #{reason := nodedown}},
        sluice:start(["true"], #{node => 'nobody@127.0.0.1'})),
    ?assertMatch({ok, #{stdout := <<"here\n">>}}, sluice:run(["echo", "here"], [{node, node()}])).

fold_chunks_and_lines() ->
    % Chunks as they come: every byte once, in order.
    {ok, Chunks, 0} = sluice:fold(["seq", "10000"], fun(C, Acc) -> [C | Acc] end, []),
    Expected = iolist_to_binary([[integer_to_list(N), $\n] || N <- lists:seq(1, 10000)]),
    ?assertEqual(Expected, iolist_to_binary(lists:reverse(Chunks))),
    % chunk_size bounds each chunk.
    {ok, Sizes, 0} = sluice:fold(["head", "-c", "1000", "/dev/zero"],
        fun(C, Acc) -> [byte_size(C) | Acc] end, [], [{chunk_size, 100}]),
    ?assertEqual(1000, lists:sum(Sizes)),
    ?assert(lists:max(Sizes) =< 100),
    % lines as a bare atom: whole lines without their newline, the last one too.
    {ok, Lines, 0} = sluice:fold(["printf", "one\\ntwo\\nthree"],
        fun(L, Acc) -> Acc ++ [L] end, [], [lines]),
    ?assertEqual([<<"one">>, <<"two">>, <<"three">>], Lines),
    % A map of options, and a line longer than a chunk.
    LongLine = "head -c 200000 /dev/zero | tr '\\0' x; echo",
    {ok, [Long], 0} = sluice:fold(["sh", "-c", LongLine],
        fun(L, Acc) -> [L | Acc] end, [], #{lines => true, chunk_size => 4096}),
    ?assertEqual(binary:copy(<<"x">>, 200000), Long).

fold_tagged_stderr_and_frames() ->
    Script = "echo out; sleep 0.1; echo err >&2; sleep 0.1; echo out2",
    {ok, Tagged, 0} = sluice:fold(["sh", "-c", Script],
        fun(E, Acc) -> Acc ++ [E] end, [], [lines, {stderr, consume}]),
    % Each stream in its own order; across streams, the order they were read in (which
    % a loaded machine may change, so it is not asserted).
    ?assertEqual([<<"out">>, <<"out2">>], [L || {stdout, L} <- Tagged]),
    ?assertEqual([<<"err">>], [L || {stderr, L} <- Tagged]),
    ?assertEqual(3, length(Tagged)),
    % stderr to the null device: only stdout.
    {ok, [<<"out">>, <<"out2">>], 0} = sluice:fold(["sh", "-c", Script],
        fun(E, Acc) -> Acc ++ [E] end, [], [lines, {stderr, null}]),
    % Frames of {line, Max}, as recv/3 returns them.
    {ok, Frames, 0} = sluice:fold(["printf", "abcdef\\ngh"],
        fun(F, Acc) -> Acc ++ [F] end, [], [{framing, {line, 4}}]),
    ?assertEqual([{noeol, <<"abcd">>}, {eol, <<"ef">>}, {noeol, <<"gh">>}], Frames).

fold_statuses_and_input() ->
    % A non-zero exit or a signal is a result, as for run/2.
    ?assertEqual({ok, [<<"hi\n">>], 3},
        sluice:fold(["sh", "-c", "echo hi; exit 3"], fun(C, Acc) -> [C | Acc] end, [])),
    ?assertEqual({ok, 0, {signal, sigkill}},
        sluice:fold(["sh", "-c", "kill -9 $$"], fun(_, N) -> N + 1 end, 0)),
    % Input as iodata, written while the output is folded.
    {ok, Count, 0} = sluice:fold(["wc", "-l"], fun(C, _) -> C end, none,
        [{input, [<<"a\nb\n">>, "c\n"]}]),
    ?assertEqual(<<"3\n">>, Count),
    % A pipeline in place of argv: the last stage's status.
    Pipeline = sluice:pipeline([["printf", "b\\na\\n"], ["sort"], ["sh", "-c", "cat; exit 4"]]),
    ?assertEqual({ok, [<<"a">>, <<"b">>], 4},
        sluice:fold(Pipeline, fun(L, Acc) -> Acc ++ [L] end, [], [lines])).

% The next chunk is read only when the fun returned: a `yes' nobody keeps up with is
% blocked in write(), and a throw from the fun stops it on its way out of fold/4.
fold_has_back_pressure_and_stops_early() ->
    Self = self(),
    Slow = fun(Chunk, 0) ->
        [OsPid] = [O || #{pid := Pid, os_pid := O, argv := [<<"yes">>]} <- sluice:list(),
                        Pid =:= Self],
        Blocked = sluice_probe:eventually(fun() -> sluice_probe:state(OsPid) =:= "S" end, 5000),
        {memory, Memory} = process_info(self(), memory),
        throw({stopped, OsPid, Blocked, Memory, byte_size(Chunk)})
    end,
    {stopped, OsPid, Blocked, Memory, Size} =
        try sluice:fold(["yes"], Slow, 0, [{chunk_size, 4096}]) of
            Result -> error({not_stopped, Result})
        catch
            throw:Stopped -> Stopped
        end,
    ?assert(Blocked),
    ?assert(Size =< 4096),
    ?assert(Memory < 2 * 1024 * 1024),
    ?assertNot(sluice_probe:alive(OsPid)),
    % Any exception of the fun passes through unchanged, Elixir's ArgumentError too.
    ?assertError(my_own, sluice:fold(["yes"], fun(_, _) -> error(my_own) end, 0)),
    ?assertError(#{'__struct__' := 'Elixir.ArgumentError'},
        sluice:fold(["yes"], fun(_, _) -> 'Elixir.Sluice.Options':'timeout!'(-1) end, 0)),
    ?assertExit(bye, sluice:foreach(["yes"], fun(_) -> exit(bye) end)),
    ?assertEqual([], [E || #{pid := Pid} = E <- sluice:list(), Pid =:= Self]).

fold_errors_carry_the_acc() ->
    Collect = fun(L, Acc) -> Acc ++ [L] end,
    {error, Idle} = sluice:fold(["sh", "-c", "echo first; echo second; sleep 10"], Collect, [],
        [lines, {idle_timeout, 300}]),
    ?assertMatch(#{reason := idle_timeout, message := <<_/binary>>,
                   acc := [<<"first">>, <<"second">>]}, Idle),
    ?assertMatch("no output for 300 ms" ++ _, sluice:format_error(Idle)),
    ?assertMatch({error, #{reason := enoent, stage := exec, acc := start}},
        sluice:fold(["/no/such/program"], Collect, start)),
    % A packet larger than max_frame: announced as 1000 bytes, 10 allowed.
    {error, TooLarge} = sluice:fold(["printf", "\\000\\000\\003\\350"], Collect, [],
        [{framing, {packet, 4}}, {max_frame, 10}]),
    ?assertMatch(#{reason := frame_too_large, acc := []}, TooLarge),
    ?assertMatch({error, #{reason := nodedown, acc := 0}},
        sluice:fold(["true"], Collect, 0, [{node, 'nobody@127.0.0.1'}])),
    % foreach/3 has no accumulator.
    {error, NoAcc} = sluice:foreach(["/no/such/program"], fun(_) -> ok end),
    ?assertMatch(#{reason := enoent}, NoAcc),
    ?assertNot(maps:is_key(acc, NoAcc)).

fold_bad_arguments() ->
    Fun = fun(_, Acc) -> Acc end,
    ?assertError({badarg, 'fun', _}, sluice:fold(["true"], not_a_fun, 0, [])),
    ?assertError({badarg, 'fun', _}, sluice:fold(["true"], fun(X) -> X end, 0, [])),
    ?assertError({badarg, 'fun', _}, sluice:foreach(["true"], Fun, [])),
    ?assertError({badarg, argv, _}, sluice:fold("true", Fun, 0, [])),
    ?assertError({badarg, stderr, _}, sluice:fold(["true"], Fun, 0, [{stderr, capture}])),
    ?assertError({badarg, chunk_size, _}, sluice:fold(["true"], Fun, 0, [{chunk_size, 0}])),
    ?assertError({badarg, timeout, <<"unknown option timeout for sluice:fold/4", _/binary>>},
        sluice:fold(["true"], Fun, 0, [{timeout, 100}])),
    ?assertError({badarg, lines, <<"unknown option lines for sluice:run/2", _/binary>>},
        sluice:run(["true"], [lines])),
    % The shell points at the argument.
    try sluice:fold(["true"], 42, 0, []) of
        _ -> error(not_raised)
    catch
        error:Reason:Stack ->
            Text = lists:flatten(erl_error:format_exception(error, Reason, Stack)),
            ?assertMatch({match, _}, re:run(Text, "argument 2: expected a fun of two arguments"))
    end.

foreach_each_line() ->
    Self = self(),
    ?assertEqual({ok, 0},
        sluice:foreach(["seq", "3"], fun(Line) -> Self ! {line, Line} end, [lines])),
    ?assertEqual([<<"1">>, <<"2">>, <<"3">>],
        [receive {line, L} -> L after 0 -> missing end || _ <- [1, 2, 3]]),
    ?assertEqual({ok, 1}, sluice:foreach(["false"], fun(_) -> ok end)).

stats_of_a_running_program() ->
    {ok, P} = sluice:start_link(["cat"]),
    {ok, Fresh} = sluice:stats(P),
    ?assertMatch(#{pids_current := 1, bytes_read := 0, bytes_written := 0,
                   usage := #{source := _, cpu_user_us := _}}, Fresh),
    ok = sluice:send(P, "hello"),
    {ok, <<"hello">>} = sluice:recv(P, 0, 5000),
    {ok, Used} = sluice:stats(P, 5000),
    ?assertMatch(#{bytes_read := 5, bytes_written := 5, age_ms := Age} when Age >= 0, Used),
    ?assertError({badarg, timeout, _}, sluice:stats(P, soon)),
    ok = sluice:close_stdin(P),
    eof = sluice:recv(P, 0, 5000),
    % After the exit, until the status is delivered: the exit's usage.
    ?assert(sluice_probe:eventually(
        fun() -> element(1, sluice:stats(P)) =:= ok andalso
                 maps:is_key(statuses, element(2, sluice:stats(P))) end, 5000)),
    ?assertMatch({ok, #{pids_current := 0, statuses := [0], core_dumped := false}},
        sluice:stats(P)),
    {ok, 0} = sluice:await_exit(P, 5000),
    ?assert(sluice_probe:eventually(fun() -> sluice:stats(P) =:= {error, closed} end, 5000)).

send_recv_close_stdin() ->
    {ok, P} = sluice:start_link(["cat"]),
    ?assertEqual(ok, sluice:send(P, "hello ")),
    ?assertEqual(ok, sluice:send(P, [<<"wor">>, $l, "d"], 5000)),
    ?assertEqual({ok, <<"hello world">>}, recv_all(P, 11, <<>>)),
    ?assertEqual({error, timeout}, sluice:recv(P, 10, 100)),
    ?assertEqual(ok, sluice:close_stdin(P)),
    ?assertEqual({error, closed}, sluice:send(P, "late")),
    ?assertEqual(eof, sluice:recv(P, 0, 5000)),
    ?assertEqual({ok, 0}, sluice:await_exit(P, 5000)),
    ?assert(is_integer(sluice:os_pid(P)) orelse sluice:os_pid(P) =:= {error, closed}).

recv_all(_P, 0, Acc) -> {ok, Acc};
recv_all(P, Left, Acc) ->
    {ok, Data} = sluice:recv(P, Left, 5000),
    recv_all(P, Left - byte_size(Data), <<Acc/binary, Data/binary>>).

recv_stderr() ->
    {ok, P} = sluice:start_link(["sh", "-c", "echo oops >&2"], [{stderr, consume}]),
    ?assertEqual({ok, <<"oops\n">>}, sluice:recv_stderr(P, 100, 5000)),
    ?assertEqual(eof, sluice:recv(P, 100, 5000)),
    ?assertEqual(eof, sluice:recv_stderr(P, 100, 5000)),
    ?assertEqual({ok, 0}, sluice:await_exit(P, 5000)).

active_once() ->
    {ok, P} = sluice:start_link(["sh", "-c", "echo one; sleep 0.3; echo two"]),
    ok = sluice:setopts(P, [{active, once}]),
    ?assertEqual(<<"one\n">>, receive {sluice_stdout, P, D1} -> D1 after 5000 -> timeout end),
    % Nothing more until granted.
    ?assertEqual(none, receive {sluice_stdout, P, _} -> more after 100 -> none end),
    ok = sluice:setopts(P, [{active, once}]),
    ?assertEqual({error, active}, sluice:recv(P, 10, 100)),
    ?assertEqual(<<"two\n">>, receive {sluice_stdout, P, D2} -> D2 after 5000 -> timeout end),
    ok = sluice:setopts(P, [{active, once}]),
    ?assertEqual(0, receive {sluice_exit, P, S} -> S after 5000 -> timeout end).

% Options pass through by name: {packet, 4} frames on the program's fds 3 and 4.
framing_over_fds_3_and_4() ->
    Echo = ["python3", "test/fixtures/frames.py", "echo", "--fd4"],
    {ok, P} = sluice:start_link(Echo, [{framing, {packet, 4}}, {use_stdio, false}]),
    % One send is one frame (its 4-byte length, then the bytes); one recv, one frame.
    ok = sluice:send(P, "abc"),
    ?assertEqual({ok, <<"abc">>}, sluice:recv(P, 0, 5000)),
    ok = sluice:setopts(P, [{active, once}]),
    ok = sluice:send(P, [<<"x">>, "yz"]),
    ?assertEqual(<<"xyz">>, receive {sluice_stdout, P, F} -> F after 5000 -> timeout end),
    {ok, L} = sluice:start_link(["printf", "a\\nb"], #{framing => {line, 10}}),
    ?assertEqual({ok, {eol, <<"a">>}}, sluice:recv(L, 0, 5000)),
    ?assertEqual({ok, {noeol, <<"b">>}}, sluice:recv(L, 0, 5000)).

a_worker_in_order() ->
    Echo = ["python3", "test/fixtures/frames.py", "echo", "--fd4"],
    {ok, W} = sluice:start_worker(Echo, [{use_stdio, false}, {name, {local, sluice_erl_worker}}]),
    ?assertEqual({ok, <<"one">>}, sluice:call(sluice_erl_worker, "one")),
    ?assertEqual({ok, <<"two">>}, sluice:call(W, [<<"t">>, "wo"], 5000)),
    ?assertError({badarg, request, _}, sluice:call(W, 42)),
    ?assertMatch(#{id := sluice_erl_worker, start := {sluice, start_worker, _}},
        sluice:worker_spec(Echo, [{name, {local, sluice_erl_worker}}])),
    ?assertError({badarg, framing, _}, sluice:start_worker(Echo, [{framing, raw}])),
    unlink(W),
    ok = gen_server:stop(W),
    ?assertEqual({error, closed}, sluice:call(W, "late")).

active_n_and_passive() ->
    {ok, P} = sluice:start_link(["sh", "-c", "echo a; sleep 0.1; echo b; sleep 0.1; echo c"]),
    ok = sluice:setopts(P, [{active, 2}]),
    ?assertEqual(<<"a\n">>, receive {sluice_stdout, P, A} -> A after 5000 -> timeout end),
    ?assertEqual(<<"b\n">>, receive {sluice_stdout, P, B} -> B after 5000 -> timeout end),
    ?assertEqual(passive, receive {sluice_passive, P} -> passive after 5000 -> timeout end),
    ok = sluice:setopts(P, [{active, 5}]),
    ?assertEqual(<<"c\n">>, receive {sluice_stdout, P, C} -> C after 5000 -> timeout end),
    ?assertEqual(0, receive {sluice_exit, P, S} -> S after 5000 -> timeout end).

controlling_process() ->
    Self = self(),
    {ok, P} = sluice:start_link(["sh", "-c", "sleep 0.2; echo handed"]),
    Other = spawn_link(fun() ->
        receive go -> ok end,
        ok = sluice:setopts(P, [{active, 5}]),
        receive {sluice_stdout, P, Data} -> Self ! {other_got, Data} end,
        receive {sluice_exit, P, Status} -> Self ! {other_exit, Status} end
    end),
    ?assertEqual({error, not_owner},
        erpc_call(fun() -> sluice:controlling_process(P, self()) end)),
    ok = sluice:controlling_process(P, Other),
    Other ! go,
    ?assertEqual(<<"handed\n">>, receive {other_got, D} -> D after 5000 -> timeout end),
    ?assertEqual(0, receive {other_exit, S} -> S after 5000 -> timeout end),
    ?assertEqual(nothing, receive {sluice_stdout, P, _} -> leaked after 100 -> nothing end).

controlling_process_to_a_non_pid() ->
    {ok, P} = sluice:start_link(["cat"]),
    ?assertError({badarg, pid, _}, sluice:controlling_process(P, not_a_pid)),
    try sluice:controlling_process(P, "pid") of
        _ -> error(not_raised)
    catch
        error:Reason:Stack ->
            [{sluice, controlling_process, [P, "pid"], _} | _] = Stack,
            Text = lists:flatten(erl_error:format_exception(error, Reason, Stack)),
            ?assertMatch({match, _}, re:run(Text, "argument 2: controlling_process/2 hands"))
    end,
    ok = sluice:send(P, "on"),
    ?assertEqual({ok, <<"on">>}, sluice:recv(P, 0, 5000)),
    ?assertEqual(ok, sluice:controlling_process(P, self())).

% Runs Fun in another process and returns its result.
erpc_call(Fun) ->
    Self = self(),
    Pid = spawn(fun() -> Self ! {self(), Fun()} end),
    receive {Pid, Result} -> Result after 5000 -> timeout end.

stop_a_term_ignoring_shell() ->
    {ok, P} = sluice:start_link(["sh", "-c", "trap '' TERM; echo ready; sleep 100"]),
    OsPid = sluice:os_pid(P),
    {ok, <<"ready\n">>} = sluice:recv(P, 100, 5000),
    Started = erlang:monotonic_time(millisecond),
    ?assertEqual({ok, {signal, sigkill}}, sluice:stop(P, 300)),
    ?assert(erlang:monotonic_time(millisecond) - Started >= 300),
    ?assertNot(sluice_probe:alive(OsPid)),
    ?assertEqual({error, closed}, sluice:stop(P)),
    % A signal by number.
    {ok, Q} = sluice:start_link(["sleep", "100"]),
    ok = sluice:signal(Q, 10),
    ?assertEqual({ok, {signal, sigusr1}}, sluice:await_exit(Q, 5000)).

spawn_error_map() ->
    {error, Error} = sluice:start_link(["/no/such/program"]),
    ?assertMatch(#{reason := enoent, stage := exec, message := <<_/binary>>}, Error),
    ?assertNot(maps:is_key(result, Error)),
    ?assertMatch({error, #{reason := eacces, stage := exec}}, sluice:start(["/etc/passwd"], [])).

format_error_text() ->
    {error, Error} = sluice:run(["/no/such/program"]),
    Text = sluice:format_error(Error),
    ?assert(io_lib:printable_unicode_list(Text)),
    ?assertMatch({match, _}, re:run(Text, "/no/such/program.*enoent.*stage exec")),
    ?assertEqual("timed out", sluice:format_error(timeout)),
    ?assertEqual("the program closed its stdin", sluice:format_error(epipe)),
    ?assertEqual("timed out after writing 12 bytes", sluice:format_error({timeout, 12})).

bad_arguments_name_the_option() ->
    ?assertError({badarg, bogus, <<"unknown option bogus for sluice:run/2", _/binary>>},
        sluice:run(["true"], [bogus])),
    ?assertError({badarg, stderr, _}, sluice:run(["true"], [{stderr, sideways}])),
    ?assertError({badarg, env, _}, sluice:run(["true"], [{env, [{"X", 1}]}])),
    ?assertError({badarg, env, _}, sluice:run(["true"], [{env, [not_a_pair]}])),
    ?assertError({badarg, cd, _}, sluice:run(["true"], [{cd, 42}])),
    ?assertError({badarg, argv, _}, sluice:run("true", [])),
    % One string: the message shows the argv to write.
    ?assertError({badarg, argv, <<"argv is a list of strings, one per argument, not one string"
        " (no shell splits it): [\"echo\", \"hi\"]">>}, sluice:run("echo hi")),
    ?assertError({badarg, argv, <<"argv is a list of strings, one per argument, not one string"
        " (no shell splits it); for a shell command line, run a shell: "
        "[\"sh\", \"-c\", \"echo a; exit 3\"]">>}, sluice:run("echo a; exit 3")),
    % An unknown option near a known one is named.
    ?assertError({badarg, timout, <<"unknown option timout for sluice:run/2; "
        "did you mean timeout? known options: ", _/binary>>},
        sluice:run(["true"], [{timout, 5}])),
    ?assertError({badarg, argv, _}, sluice:run([], [])),
    ?assertError({badarg, argv, _}, sluice:run([true], [])),
    ?assertError({badarg, options, _}, sluice:run(["true"], not_options)),
    ?assertError({badarg, input, _}, sluice:run(["cat"], [{input, [1000]}])),
    ?assertError({badarg, kill_grace, _}, sluice:start_link(["true"], [{kill_grace, -1}])),
    {ok, P} = sluice:start_link(["cat"]),
    ?assertError({badarg, active, _}, sluice:setopts(P, [{active, true}])),
    ?assertError({badarg, active, _}, sluice:setopts(P, [{active, 0}])),
    ?assertError({badarg, packet, _}, sluice:setopts(P, [{packet, 4}])),
    ?assertError({badarg, signal, _}, sluice:signal(P, sigbogus)),
    ?assertError({badarg, max, _}, sluice:recv(P, -1, 100)),
    ?assertError({badarg, timeout, _}, sluice:await_exit(P, soon)),
    ?assertError({badarg, data, _}, sluice:send(P, 123)),
    ?assertError({badarg, grace_ms, _}, sluice:stop(P, -5)),
    % Timeouts past the timers' range (2^32 - 1 ms) are refused before anything starts.
    ?assertError({badarg, timeout, _}, sluice:run(["sleep", "5"], [{timeout, 1 bsl 32}])),
    ?assertError({badarg, idle_timeout, _},
        sluice:fold(["sleep", "5"], fun(_, A) -> A end, 0, [{idle_timeout, 1 bsl 42}])),
    ?assertError({badarg, timeout, _}, sluice:recv(P, 10, 1 bsl 42)),
    ?assertError({badarg, timeout, _}, sluice:send(P, "x", 1 bsl 32)),
    ?assertError({badarg, timeout, _}, sluice:await_exit(P, 1 bsl 42)),
    ?assertError({badarg, timeout, _}, sluice:stats(P, 1 bsl 42)),
    ?assertError({badarg, grace_ms, _}, sluice:stop(P, 1 bsl 42)),
    % The program and the VM carry on.
    ok = sluice:send(P, "still here"),
    ?assertEqual({ok, <<"still here">>}, sluice:recv(P, 100, 5000)),
    {ok, _} = sluice:stop(P, 1000).

badarg_explained_by_the_shell() ->
    try sluice:run(["true"], [{stderr, sideways}]) of
        _ -> error(not_raised)
    catch
        error:Reason:Stack ->
            [{sluice, run, [["true"], [{stderr, sideways}]], _} | _] = Stack,
            Text = lists:flatten(erl_error:format_exception(error, Reason, Stack)),
            ?assertMatch({match, _}, re:run(Text, "argument 2: invalid value for option stderr"))
    end.

% The What of a badarg comes from the checks' fields, never from their text: no atom is
% made from a value, and a value that reads like an option does not name it.
bad_values_make_no_atoms() ->
    {ok, P} = sluice:start_link(["cat"]),
    Calls = fun(N) ->
        Text = <<"option :sluice_no_such_", (integer_to_binary(N))/binary>>,
        ?assertError({badarg, os_pid, _}, sluice:manage(Text)),
        ?assertError({badarg, data, _}, sluice:send(P, {Text})),
        ?assertError({badarg, signal, _}, sluice:signal(P, Text)),
        ?assertError({badarg, nice, _}, sluice:run(["true"], [{nice, Text}])),
        ?assertError({badarg, env, _}, sluice:run(["true"], [{env, [{Text, 1}]}]))
    end,
    % Once, so that every module involved is loaded (loading makes atoms).
    Calls(0),
    Before = erlang:system_info(atom_count),
    lists:foreach(Calls, lists:seq(1, 4000)),
    ?assertEqual(Before, erlang:system_info(atom_count)),
    ?assertError({badarg, data, _}, sluice:send(P, {"option :timeout"})),
    {ok, _} = sluice:stop(P, 1000).

% What the API promises for every mistake: error:{badarg, What, Message}, never a
% function_clause, a bad_generator or a plain badarg.
every_mistake_is_a_badarg() ->
    NotAProcess = [42, "name", 1.5, {a, b, c}],
    [
        begin
            ?assertError({badarg, process, _}, sluice:close_stdin(P)),
            ?assertError({badarg, process, _}, sluice:os_pid(P)),
            ?assertError({badarg, process, _}, sluice:info(P)),
            ?assertError({badarg, process, _}, sluice:send(P, "x")),
            ?assertError({badarg, process, _}, sluice:recv(P, 0)),
            ?assertError({badarg, process, _}, sluice:stop(P)),
            ?assertError({badarg, process, _}, sluice:await_exit(P)),
            ?assertError({badarg, process, _}, sluice:stats(P)),
            ?assertError({badarg, process, _}, sluice:signal(P, sigterm)),
            ?assertError({badarg, process, _}, sluice:setopts(P, [{active, once}])),
            ?assertError({badarg, worker, _}, sluice:call(P, "x"))
        end
     || P <- NotAProcess
    ],
    % A registered name nobody holds is a process that has ended.
    ?assertEqual({error, closed}, sluice:os_pid(sluice_nobody_here)),
    % The shell points at the argument.
    {'EXIT', {{badarg, process, _} = Reason, Stack}} = (catch sluice:send(42, "x", 100)),
    ?assertMatch(#{1 := "process must be" ++ _}, sluice:format_error(Reason, Stack)),
    Fun = fun(_, Acc) -> Acc end,
    ?assertError({badarg, options, _}, sluice:run(["true"], [clear_env | pty])),
    ?assertError({badarg, options, _}, sluice:fold(["true"], Fun, 0, [lines | x])),
    ?assertError({badarg, options, _}, sluice:start_worker(["cat"], [{log, false} | x])),
    ?assertError({badarg, options, _}, sluice:daemon_spec(["cat"], [{log, false} | x])),
    {ok, P1} = sluice:start_link(["cat"]),
    ?assertError({badarg, options, _}, sluice:setopts(P1, [{active, once} | x])),
    {ok, _} = sluice:stop(P1, 1000),
    ?assertError({badarg, env, _}, sluice:run(["true"], [{env, [{"A", "b"} | x]}])),
    ?assertError({badarg, env, _}, sluice:run(["true"], #{env => [{"A", "b"} | x]})),
    ?assertError({badarg, env, _}, sluice:run(["true"], [{env, [{"A", [a, b]}]}])),
    ?assertError({badarg, env, _}, sluice:run(["true"], [{env, [{"A", [-1]}]}])),
    ?assertError({badarg, env, _}, sluice:run(["true"], [{env, [{[x], "b"}]}])),
    ?assertError({badarg, argv, _}, sluice:run([<<"true">> | <<"x">>], [])),
    ?assertError({badarg, argv, _}, sluice:run(["true", [a]], [])),
    ?assertError({badarg, stages, _}, sluice:pipeline([["true"] | x])),
    ?assertError({badarg, kill_command, _}, sluice:run(["true"], [{kill_command, ["a" | x]}])),
    ?assertError({badarg, pty, _}, sluice:run(["true"], [{pty, [echo | x]}])),
    ?assertError({badarg, stdout, _},
        sluice:run(["true"], [{stdout, {file, "/tmp/x", [append | x]}}])),
    ?assertError({badarg, stdout, _}, sluice:run(["true"], [{stdout, {file, [a]}}])).

owner_death_kills_the_program() ->
    Self = self(),
    Owner = spawn(fun() ->
        {ok, P} = sluice:start_link(["sleep", "100"]),
        Self ! {os_pid, sluice:os_pid(P)},
        receive never -> ok end
    end),
    OsPid = receive {os_pid, N} -> N after 5000 -> error(no_start) end,
    ?assert(sluice_probe:alive(OsPid)),
    exit(Owner, kill),
    ?assert(sluice_probe:eventually(fun() -> not sluice_probe:alive(OsPid) end, 6000)).

daemon_restarted_by_its_supervisor() ->
    Opts = [{name, {local, sluice_erl_daemon}}, {log, false}],
    Spec = sluice:daemon_spec(["sleep", "100"], Opts),
    ?assertMatch(#{id := sluice_erl_daemon, start := {sluice, start_daemon, _}}, Spec),
    {ok, Sup} = supervisor:start_link(sluice_test_sup, [Spec]),
    First = sluice:os_pid(sluice_erl_daemon),
    ?assert(sluice_probe:alive(First)),
    os:cmd("kill -9 " ++ integer_to_list(First)),
    Restarted = fun() ->
        New = (catch sluice:os_pid(sluice_erl_daemon)),
        is_integer(New) andalso New =/= First
    end,
    ?assert(sluice_probe:eventually(Restarted, 5000)),
    Second = sluice:os_pid(sluice_erl_daemon),
    unlink(Sup),
    Ref = monitor(process, Sup),
    exit(Sup, shutdown),
    receive {'DOWN', Ref, process, Sup, _} -> ok end,
    ?assertNot(sluice_probe:alive(Second)).

% A mistake in a child spec's options is a badarg when the spec is built, not when the
% supervisor starts the child; valid specs start.
child_specs_check_their_options() ->
    Sleep = ["sleep", "100"],
    ?assertError({badarg, bogus, <<"unknown option bogus for sluice:daemon_spec/2", _/binary>>},
        sluice:daemon_spec(Sleep, [{bogus, 1}])),
    ?assertError({badarg, stderr, <<"sluice:daemon_spec/2 does not take the option stderr", _/binary>>},
        sluice:daemon_spec(Sleep, [{stderr, null}])),
    ?assertError({badarg, kill_grace, _}, sluice:daemon_spec(Sleep, [{kill_grace, -1}])),
    ?assertError({badarg, log, _}, sluice:daemon_spec(Sleep, [{log, loud}])),
    ?assertError({badarg, argv, _}, sluice:daemon_spec("sleep 100", [])),
    ?assertError({badarg, bogus, <<"unknown option bogus for sluice:worker_spec/2", _/binary>>},
        sluice:worker_spec(["cat"], [bogus])),
    ?assertError({badarg, framing, _}, sluice:worker_spec(["cat"], [{framing, raw}])),
    ?assertError({badarg, stderr, _}, sluice:worker_spec(["cat"], [{stderr, consume}])),
    ?assertError({badarg, bogus, <<"unknown option bogus for sluice:start_worker/2", _/binary>>},
        sluice:start_worker(["cat"], [{bogus, 1}])),
    % The shell explains it at the options' position.
    {'EXIT', {{badarg, bogus, _} = Reason, Stack}} = (catch sluice:worker_spec(["cat"], [bogus])),
    ?assertMatch(#{2 := "unknown option bogus for sluice:worker_spec/2" ++ _},
        sluice:format_error(Reason, Stack)),
    Specs = [
        sluice:daemon_spec(Sleep, [{name, {local, sluice_erl_spec_daemon}}, {log, false}]),
        sluice:worker_spec(["cat"], [{name, {local, sluice_erl_spec_worker}}, {framing, {line, 100}}])
    ],
    {ok, Sup} = supervisor:start_link(sluice_test_sup, Specs),
    ?assertEqual({ok, {eol, <<"hi">>}}, sluice:call(sluice_erl_spec_worker, "hi\n")),
    Daemon = sluice:os_pid(sluice_erl_spec_daemon),
    unlink(Sup),
    Ref = monitor(process, Sup),
    exit(Sup, shutdown),
    receive {'DOWN', Ref, process, Sup, _} -> ok end,
    ?assertNot(sluice_probe:alive(Daemon)).

terminal_modes_while_running() ->
    {ok, P} = sluice:start_link(["cat"], [{pty, [echo]}]),
    ok = sluice:set_terminal_modes(P, [{echo, 0}]),
    ok = sluice:send(P, "quiet\n"),
    % Echo off: only cat's own copy comes back.
    ?assertEqual(<<"quiet\r\n">>, recv_bytes(P, 7, <<>>)),
    ?assertError({badarg, _, _}, sluice:set_terminal_modes(P, [{bogus, 1}])),
    {ok, _} = sluice:stop(P, 1000),
    {ok, Q} = sluice:start_link(["cat"]),
    ?assertEqual({error, not_a_terminal}, sluice:set_terminal_modes(Q, [{echo, 0}])),
    {ok, _} = sluice:stop(Q, 1000).

close_one_output() ->
    Loop = "trap '' PIPE; while echo x 2>/dev/null; do :; done; echo gone >&2",
    {ok, P} = sluice:start_link(["sh", "-c", Loop], [{stderr, consume}]),
    {ok, _} = sluice:recv(P, 0, 5000),
    ok = sluice:close_output(P, stdout),
    ?assertEqual(eof, sluice:recv(P, 0, 5000)),
    ?assertEqual(<<"gone\n">>, recv_stderr_bytes(P, 5, <<>>)),
    ?assertEqual({ok, 0}, sluice:await_exit(P, 5000)),
    ?assertError(_, sluice:close_output(P, stdin)).

stop_a_program_from_another_process() ->
    Self = self(),
    Runner = spawn(fun() -> Self ! {ran, sluice:run(["sleep", "60"])} end),
    OsPid = await_listed(Runner, 100),
    ok = sluice:stop_program(OsPid, [{kill_grace, 1000}]),
    receive
        {ran, {ok, #{status := Status}}} -> ?assertEqual({signal, sigterm}, Status)
    after 5000 -> error(not_stopped)
    end,
    ?assertEqual({error, not_found}, sluice:stop_program(OsPid)).

await_listed(_Pid, 0) ->
    error(never_listed);
await_listed(Pid, N) ->
    case [E || #{pid := P} = E <- sluice:list(), P =:= Pid] of
        [#{os_pid := OsPid}] ->
            OsPid;
        [] ->
            timer:sleep(20),
            await_listed(Pid, N - 1)
    end.

on_a_terminal() ->
    {ok, #{stdout := <<"40 100\r\n">>}} =
        sluice:run(["stty", "size"], [{pty, [{rows, 40}, {cols, 100}]}]),
    {ok, #{stdout := Modes}} = sluice:run(["stty", "-a"], [{pty, [{modes, [{icanon, 0}]}]}]),
    ?assertMatch({match, _}, re:run(Modes, "-icanon")),
    % A bare pty, and echo as a bare atom inside it.
    {ok, P} = sluice:start_link(["cat"], [pty]),
    ok = sluice:send(P, "abc\n"),
    ?assertEqual({ok, <<"abc\r\n">>}, sluice:recv(P, 0, 5000)),
    ok = sluice:set_window_size(P, 50, 132),
    ok = sluice:close_stdin(P),
    ?assertEqual({ok, 0}, sluice:await_exit(P, 5000)),
    {ok, Q} = sluice:start_link(["cat"], [{pty, [echo]}]),
    ok = sluice:send(Q, "x\n"),
    ?assertEqual(<<"x\r\nx\r\n">>, recv_bytes(Q, 6, <<>>)),
    {ok, _} = sluice:stop(Q, 1000),
    % A raw terminal has no end of input: nothing written, stdin stays open; run refuses
    % input for it.
    {ok, Raw} = sluice:start_link(["cat"], [{pty, [{modes, [{icanon, 0}]}]}]),
    ?assertMatch({error, #{reason := raw_terminal}}, sluice:close_stdin(Raw)),
    ok = sluice:send(Raw, "r"),
    ?assertEqual({ok, <<"r">>}, sluice:recv(Raw, 0, 5000)),
    {ok, _} = sluice:stop(Raw, 1000),
    ?assertError(
        {badarg, input, _},
        sluice:run(["cat"], [{pty, [{modes, [{icanon, 0}]}]}, {input, <<"x">>}])
    ),
    {ok, R} = sluice:start_link(["cat"]),
    ?assertEqual({error, not_a_terminal}, sluice:set_window_size(R, 50, 132)),
    ?assertError({badarg, pty, _}, sluice:run(["true"], [{pty, [{modes, [{bogus, 1}]}]}])),
    {ok, _} = sluice:stop(R, 1000).

recv_bytes(_P, 0, Acc) -> Acc;
recv_bytes(P, Left, Acc) ->
    {ok, Data} = sluice:recv(P, Left, 5000),
    recv_bytes(P, Left - byte_size(Data), <<Acc/binary, Data/binary>>).

recv_stderr_bytes(_P, 0, Acc) -> Acc;
recv_stderr_bytes(P, Left, Acc) ->
    {ok, Data} = sluice:recv_stderr(P, Left, 5000),
    recv_stderr_bytes(P, Left - byte_size(Data), <<Acc/binary, Data/binary>>).

manage_an_external_process() ->
    OsPid = list_to_integer(string:trim(os:cmd("sleep 300 > /dev/null 2>&1 & echo $!"))),
    {ok, P} = sluice:manage(OsPid, [{kill_grace, 1000}]),
    ?assertEqual(OsPid, sluice:os_pid(P)),
    ?assertMatch(#{os_pid := OsPid, managed := true, cgroup := undefined}, sluice:info(P)),
    ?assertEqual({error, not_piped}, sluice:recv(P, 10, 100)),
    ?assertEqual({ok, unknown}, sluice:stop(P, 1000)),
    ?assertNot(sluice_probe:alive(OsPid)),
    ?assertMatch({error, #{reason := esrch, stage := manage}}, sluice:manage(OsPid)),
    ?assertError({badarg, os_pid, _}, sluice:manage(1)),
    ?assertError({badarg, os_pid, _}, sluice:manage(list_to_integer(os:getpid()))).

list_shows_every_program() ->
    Before = erlang:system_time(millisecond),
    {ok, P} = sluice:start_link(["sleep", "30"], []),
    Self = self(),
    [Entry] = [E || #{pid := Pid} = E <- sluice:list(), Pid =:= P],
    ?assertMatch(
        #{argv := [<<"sleep">>, <<"30">>], pipeline := undefined, owner := Self, managed := false},
        Entry
    ),
    #{started_at := Started, cgroup := Cgroup} = Entry,
    ?assert(Started >= Before - 1000 andalso Started =< erlang:system_time(millisecond)),
    ?assert(Cgroup =:= undefined orelse is_binary(Cgroup)),
    ?assertEqual(Entry, sluice:info(P)),
    {ok, Piped} = sluice:start_link(sluice:pipeline([["sleep", "31"], ["cat"]]), []),
    ?assertMatch(
        #{argv := [<<"sleep">>, <<"31">>], pipeline := [[<<"sleep">>, <<"31">>], [<<"cat">>]]},
        sluice:info(Piped)
    ),
    {ok, _} = sluice:stop(Piped, 1000),
    {ok, _} = sluice:stop(P, 1000),
    ?assert(sluice_probe:eventually(
        fun() -> [E || #{pid := Pid} = E <- sluice:list(), Pid =:= P] =:= [] end, 2000)).

configured_from_sys_config() ->
    % scripts/erlang_test.sh starts the VM with test/erlang/sys.config.
    ?assertEqual({ok, auto}, application:get_env(sluice, cgroup)),
    ?assertEqual({ok, 1000}, application:get_env(sluice, shutdown_grace)).

files_users_and_limits() ->
    File = "/tmp/sluice_erl_" ++ integer_to_list(erlang:unique_integer([positive])),
    {ok, #{status := 0, stdout := undefined, statuses := [0]}} =
        sluice:run(["echo", "one"], [{stdout, {file, File, []}}]),
    {ok, _} = sluice:run(["echo", "two"], [{stdout, {file, File, [{append, true}]}}]),
    {ok, _} = sluice:run(["echo", "three"], [{stdout, {file, File, [append, {mode, 8#600}]}}]),
    ?assertEqual({ok, <<"one\ntwo\nthree\n">>}, file:read_file(File)),
    {ok, #{stdout := <<"one\ntwo\nthree\n">>}} = sluice:run(["cat"], [{stdin, {file, File}}]),
    ok = file:delete(File),
    {ok, #{stdout := <<"0027\n">>}} = sluice:run(["sh", "-c", "umask"], [{umask, 8#027}]),
    {ok, #{stdout := <<"renamed">>}} =
        sluice:run(["sh", "-c", "head -c 7 /proc/$$/cmdline"], [{arg0, "renamed"}]),
    {ok, #{stdout := <<"64\n">>, usage := #{source := _}}} =
        sluice:run(["sh", "-c", "ulimit -n"], [{rlimits, [{nofile, 64}]}]),
    ?assertMatch({error, #{reason := nouser, stage := credentials}},
        sluice:run(["true"], [{user, "sluice-no-such-user"}])),
    BadAppend = [{stdout, {file, "/tmp/x", [{append, maybe}]}}],
    ?assertError({badarg, stdout, _}, sluice:run(["true"], BadAppend)).

a_kernel_pipeline() ->
    Pipeline = sluice:pipeline([
        ["printf", "b\\na\\nc\\n"],
        {["sort"], [{env, [{"LC_ALL", "C"}]}]},
        [<<"head">>, "-n", "2"]
    ]),
    ?assertMatch({ok, #{status := 0, statuses := [0, 0, 0], stdout := <<"a\nb\n">>}},
        sluice:run(Pipeline)),
    Failing = sluice:pipeline([["sh", "-c", "echo x; exit 3"], ["cat"]]),
    ?assertMatch({ok, #{status := 0, statuses := [3, 0], stdout := <<"x\n">>}},
        sluice:run(Failing, [{pipefail, false}])),
    {ok, P} = sluice:start_link(sluice:pipeline([["cat"], ["tr", "a-z", "A-Z"]]), []),
    ok = sluice:send(P, "quiet\n"),
    ok = sluice:close_stdin(P),
    ?assertEqual({ok, <<"QUIET\n">>}, sluice:recv(P, 0, 5000)),
    ?assertEqual({ok, 0}, sluice:await_exit(P, 5000)),
    ?assertError({badarg, stages, _}, sluice:pipeline([])).
