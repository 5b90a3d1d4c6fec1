#pragma once
// The customer side of a call as a canonical phone identity. Providers send the caller's
// number as dialled (E.164, national, SIP URI) or a placeholder for withheld numbers; a
// withheld caller yields no identity (`Inbound::from = nullopt`): the call is still stored,
// but it never matches or creates a customer record.
#include <optional>
#include <string_view>

#include "channels/voice/webhook.hpp"
#include "core/interaction.hpp"

namespace sb::voice {

// "sip:+14155550100@pbx.example;user=phone" -> "+14155550100"; "tel:+1-415..." -> "+1-415...";
// other input unchanged (trimmed).
std::string_view phone_part(std::string_view raw);

// {type "phone", value E.164} or nullopt (withheld: routing's is_withheld_number, or not a
// phone number).
std::optional<Identity> phone_identity(std::string_view raw, std::string_view region,
                                       const PhoneCanonicalizer& canon);

// Fills in.from (the customer: From on inbound calls, To on outbound ones) and in.to (our
// line). `direction` is "inbound", "outbound" or "" (unknown: in.from = From and in.to = {To}
// as sent, and CallInfo::direction must stay empty, so that the store settles which party is
// the customer from the call's other events and the account's lines; storage/call_parties.hpp).
void set_parties(Inbound& in, std::string_view from, std::string_view to,
                 std::string_view direction, std::string_view region,
                 const PhoneCanonicalizer& canon);

}  // namespace sb::voice
