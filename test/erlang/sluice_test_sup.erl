%% @doc A one_for_one supervisor of the given child specs, for the tests.
-module(sluice_test_sup).
-behaviour(supervisor).
-export([init/1]).

init(Specs) ->
    {ok, {#{strategy => one_for_one, intensity => 5, period => 10}, Specs}}.
