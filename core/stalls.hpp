#pragma once
// Stalls: a stage of the daemon that held work back for longer than kStallThreshold (the io
// loop blocked, requests waiting for their commit, outbox rows waiting for the relay, a waiting
// claim that found a new item only on its re-check, the agents' Redis answering late). Each is
// counted, by stage, for /metrics (switchboard_stalls_total) and logged at warn with what the stage
// was doing: at most one line per stage every 10 s, which also says how many more came meanwhile.
// So a latency spike in a graph can be tied to its stage in the log.
#include <chrono>
#include <cstdint>
#include <string_view>

namespace sb {

enum class Stall { io, writer, relay, claim, redis };
constexpr Stall kStalls[] = {Stall::io, Stall::writer, Stall::relay, Stall::claim, Stall::redis};
constexpr auto kStallThreshold = std::chrono::milliseconds(250);

const char* stall_name(Stall stage);  // "io", "writer", "relay", "claim", "redis"
// Any thread. `what`: what the stage was doing, with its numbers ("requests waited up to
// 412 ms for their commit: ...").
void note_stall(Stall stage, std::string_view what);
std::uint64_t stalls(Stall stage);

}  // namespace sb
