#pragma once
// Identities of two types that name one person. A message brings what the platform knows: a
// user id with the username it was sent under (x 2244994999 from "AnnLee"), or a WhatsApp
// number. A customer file or the ingest API gives what people write down: the username
// (x_handle "annlee", see identity.hpp for why it is not an id) or the phone number.
//
// Customer matching (storage/store.cpp) looks from the message's side to the other when the
// exact identity is unknown; the customer import (storage/customers.cpp) looks the other way,
// and for equal values (WhatsApp and phone) both ways, as a file may give either.
// Both read this one table, so that a message and a customer file agree on who is who
// whichever came first: otherwise one person becomes two customers.
#include <string>
#include <string_view>

#include "core/interaction.hpp"

namespace sb {

struct IdentityLink {
  std::string_view type;         // what a message brings: x, telegram, instagram, whatsapp
  std::string_view linked_type;  // what a customer file gives: x_handle, ..., phone
  // True: the linked value is the message identity's username (its `handle`, compared as
  // username_key), as for x 2244994999 sent by "AnnLee" and x_handle "annlee". False: the two
  // values are equal, as for whatsapp +14155550111 and phone +14155550111.
  bool by_username = false;
};

// The link from a message identity's type ("x" -> x_handle), and the link to a customer
// file's type ("x_handle" -> x); nullptr when the type has none.
const IdentityLink* link_from(std::string_view type);
const IdentityLink* link_to(std::string_view linked_type);

// A username as a platform sends it ("AnnLee", "@AnnLee") as the `<platform>_handle` value
// it matches: leading '@'s dropped, ASCII lower-cased (what canonical_handle makes of a valid
// one). storage/schema.cpp indexes the same thing in SQL, lower(ltrim(handle, '@')), over the
// stored handles of the by_username types: change both or neither.
std::string username_key(std::string_view handle);

// The username a message identity of a by_username type (x, telegram, instagram) was sent
// under, as its username_key: what its stored handle is compared and indexed by. "" when the
// type has no username link, when the message carries none (Instagram from Meta), or when its
// handle is no username: all digits (the ingest API's from.handle when it gives the user id,
// which canonicalize reads as the id, never as a username) or characters no username has.
std::string message_username(const Identity& from);

}  // namespace sb
