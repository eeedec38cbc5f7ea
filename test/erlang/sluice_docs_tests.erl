%% @doc Runs every `erlang' block of docs/erlang.md and README.md, in order: a block
%% that starts with `-module(' is compiled and loaded, any other is evaluated as
%% expressions in a fresh process (its programs die with it), followed by sluice_probe's
%% leak checks. A snippet checks itself by matching (`{ok, #{status := 0}} = ...').
-module(sluice_docs_tests).
-include_lib("eunit/include/eunit.hrl").

erlang_md_test_() ->
    snippets("docs/erlang.md", 6).

readme_test_() ->
    snippets("README.md", 1).

% The docs chunk built from src/sluice.erl's edoc comments came with the library:
% h(sluice, run) works in erl.
docs_chunk_test() ->
    {ok, {docs_v1, _, erlang, _, #{<<"en">> := _}, _, Docs}} = code:get_doc(sluice),
    [_ | _] = [Doc || {{function, run, 2}, _, _, #{<<"en">> := Doc}, _} <- Docs].

snippets(Doc, AtLeast) ->
    {ok, Markdown} = file:read_file(Doc),
    Blocks = blocks(binary_to_list(Markdown)),
    ?assert(length(Blocks) >= AtLeast),
    {foreach, fun sluice_probe:start/0, fun sluice_probe:check/1,
        [{block_name(Doc, Line), {timeout, 30, fun() -> run_block(Code) end}}
         || {Line, Code} <- Blocks]}.

block_name(Doc, Line) ->
    lists:flatten(io_lib:format("~s, the erlang block at line ~b", [Doc, Line])).

% {FirstLine, Code} of every ```erlang block, but the files of an example project: those
% start with a comment naming the file (`%% my_app/rebar.config') and are built as a
% project by test/sluice/erlang_project_test.exs.
blocks(Markdown) ->
    Lines = string:split(Markdown, "\n", all),
    blocks(Lines, 1, []).

blocks([], _N, Acc) ->
    lists:reverse(Acc);
blocks(["```erlang" | Rest], N, Acc) ->
    {Code, After} = lists:splitwith(fun(L) -> L =/= "```" end, Rest),
    Block = [{N, lists:flatten(lists:join("\n", Code))} || not project_file(Code)],
    blocks(tl(After), N + length(Code) + 2, lists:reverse(Block, Acc));
blocks([_ | Rest], N, Acc) ->
    blocks(Rest, N + 1, Acc).

project_file(["%% " ++ Path | _]) ->
    re:run(Path, "^[a-z_0-9]+/[^ ]+$", [{capture, none}]) =:= match;
project_file(_) ->
    false.

run_block("-module(" ++ _ = Code) ->
    compile_module(Code);
run_block(Code) ->
    {ok, Tokens, _} = erl_scan:string(Code),
    {ok, Exprs} = erl_parse:parse_exprs(Tokens),
    Self = self(),
    {Pid, Ref} = spawn_monitor(fun() ->
        {value, Value, _} = erl_eval:exprs(Exprs, erl_eval:new_bindings()),
        Self ! {value, self(), Value}
    end),
    receive
        {value, Pid, _} -> receive {'DOWN', Ref, process, Pid, _} -> ok end;
        {'DOWN', Ref, process, Pid, Reason} -> erlang:error({snippet_failed, Reason, Code})
    end.

% A module block goes through the preprocessor (?MODULE), like a file.
compile_module(Code) ->
    Dir = filename:join(os:getenv("TMPDIR", "/tmp"), "sluice_docs_tests"),
    ok = filelib:ensure_dir(filename:join(Dir, "x")),
    {match, [Name]} = re:run(Code, "-module\\(([a-z_0-9]+)\\)", [{capture, all_but_first, list}]),
    File = filename:join(Dir, Name ++ ".erl"),
    ok = file:write_file(File, Code),
    {ok, Module, Binary} = compile:file(File, [binary, return_errors]),
    {module, Module} = code:load_binary(Module, File, Binary),
    ok.
