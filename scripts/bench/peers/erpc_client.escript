#!/usr/bin/env escript
%% -*- erlang -*-
%% A client process of the peers benchmark for Erlang/OTP erpc.
%%   escript erpc_client.escript SERVER_NODE lat|tp trivial|realistic WARMUP COUNT_OR_INFLIGHT MAX_MS_OR_MS
%% Started with ERL_FLAGS naming this node (-name c..@127.0.0.1, the cookie, epmd on
%% loopback). Connects, checks one answer, warms up, prints "ready", waits for a line on
%% stdin, measures, prints one JSON line. trivial: erpc:call(S, erlang, '+', [1, 1]).
%% realistic: erpc:call(S, lists, sort, [Items]): the 16 items of forms.mjs as tuples
%% {Score, Id, Name, Tags} (about 1 KB in the external term format) in, sorted out.
-mode(compile).

main([Server, Mode, Work, Warmup, N, Ms]) ->
    S = list_to_atom(Server),
    pong = net_adm:ping(S),
    Call = caller(S, list_to_atom(Work)),
    ok = check(Call(), list_to_atom(Work)),
    W = list_to_integer(Warmup),
    case Mode of
        "lat" -> warm(Call, W);
        "tp" -> par(Call, list_to_integer(N), fun (C) -> warm(C, W div list_to_integer(N) + 1) end)
    end,
    io:format("ready~n"),
    _ = io:get_line(""),
    case Mode of
        "lat" -> lat(Call, list_to_integer(N), list_to_integer(Ms));
        "tp" -> tp(Call, list_to_integer(N), list_to_integer(Ms))
    end,
    halt(0).

items() ->
    Names = [alpha, bravo, charlie, delta, echo, foxtrot, golf, hotel,
             india, juliett, kilo, lima, mike, november, oscar, papa],
    [{((I - 1) * 37 + 11) rem 100, I, atom_to_binary(Name),
      [<<"t", (integer_to_binary((I - 1) rem 3))/binary>>, <<"k", (integer_to_binary((I - 1) rem 5))/binary>>]}
     || {I, Name} <- lists:zip(lists:seq(1, 16), Names)].

caller(S, trivial) -> fun () -> erpc:call(S, erlang, '+', [1, 1]) end;
caller(S, realistic) -> Items = items(), fun () -> erpc:call(S, lists, sort, [Items]) end.

check(2, trivial) -> ok;
check(L, realistic) when length(L) =:= 16 -> ok.

warm(_Call, 0) -> ok;
warm(Call, K) -> Call(), warm(Call, K - 1).

now_us() -> erlang:monotonic_time(nanosecond) / 1000.

lat(Call, Count, MaxMs) ->
    Stop = erlang:monotonic_time(millisecond) + MaxMs,
    Samples = lists:sort(lat_loop(Call, Count, Stop, [])),
    Len = length(Samples),
    io:format("{\"n\":~b,\"p50\":~.3f,\"p99\":~.3f}~n", [Len, pct(Samples, Len, 50), pct(Samples, Len, 99)]).

lat_loop(_Call, 0, _Stop, Acc) -> Acc;
lat_loop(Call, K, Stop, Acc) ->
    case erlang:monotonic_time(millisecond) < Stop of
        false -> Acc;
        true ->
            T0 = now_us(), Call(), T1 = now_us(),
            lat_loop(Call, K - 1, Stop, [T1 - T0 | Acc])
    end.

pct(Sorted, Len, P) -> lists:nth(min(Len, trunc(P / 100 * Len) + 1), Sorted).

%% Inflight Erlang processes, each calling in a closed loop until the window ends.
tp(Call, Inflight, Ms) ->
    T0 = erlang:monotonic_time(nanosecond),
    Stop = erlang:monotonic_time(millisecond) + Ms,
    Counts = par(Call, Inflight, fun (C) -> tp_loop(C, Stop, 0) end),
    Secs = (erlang:monotonic_time(nanosecond) - T0) / 1.0e9,
    io:format("{\"n\":~b,\"seconds\":~.6f}~n", [lists:sum(Counts), Secs]).

tp_loop(Call, Stop, K) ->
    case erlang:monotonic_time(millisecond) < Stop of
        false -> K;
        true -> Call(), tp_loop(Call, Stop, K + 1)
    end.

par(Call, Inflight, Body) ->
    Self = self(),
    Pids = [spawn_link(fun () -> Self ! {self(), Body(Call)} end) || _ <- lists:seq(1, Inflight)],
    [receive {P, R} -> R end || P <- Pids].
