#!/usr/bin/env bash
# The Erlang face, checked as an Erlang user gets it: Sluice built into OTP libraries by
# scripts/erlang_lib.sh in a fresh directory, then a plain `erl -noshell` (no Mix, and no
# Elixir but the copy in that directory) that starts the `sluice` application from
# test/erlang/sys.config and runs the EUnit suites of test/erlang/ (the API, and every
# snippet of docs/erlang.md).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
libs="$work/lib"
bash scripts/erlang_lib.sh "$libs" > /dev/null
mkdir -p "$work/test"
erlc -o "$work/test" test/erlang/*.erl

ERL_LIBS="$libs" erl -noshell -config test/erlang/sys.config -pa "$work/test" -eval "
    Libs = \"$libs\",
    [case string:prefix(code:lib_dir(App), Libs) of
         nomatch -> io:format(\"~p is not from ~s~n\", [App, Libs]), halt(2);
         _ -> ok
     end || App <- [sluice, elixir, logger]],
    Result = eunit:test([sluice_tests, sluice_docs_tests], [verbose]),
    halt(case Result of ok -> 0; _ -> 1 end)."
