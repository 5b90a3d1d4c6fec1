#pragma once
// GMime is a C/GObject API: these helpers initialise it once per process and hold its objects
// in RAII handles so that no early return can leak a reference.
#include <memory>

#include <gmime/gmime.h>

namespace sb::email {

// Calls g_mime_init() exactly once, from whichever thread gets here first (std::call_once).
void ensure_gmime_initialised();

struct gobject_unref {
  void operator()(void* p) const {
    if (p != nullptr) {
      g_object_unref(p);
    }
  }
};

// unique_ptr for any GObject-derived type (GMimeStream, GMimeParser, GMimeMessage, ...).
template <typename T>
using gobject_ptr = std::unique_ptr<T, gobject_unref>;

struct parser_options_free {
  void operator()(GMimeParserOptions* p) const {
    if (p != nullptr) {
      g_mime_parser_options_free(p);
    }
  }
};
using parser_options_ptr = std::unique_ptr<GMimeParserOptions, parser_options_free>;

}  // namespace sb::email
