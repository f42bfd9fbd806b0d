#pragma once

#include <google/protobuf/message.h>

#include <string>
#include <string_view>

namespace crpipe {

// A small pretty-printing JSON writer for image entries, driven by protobuf reflection.
//
// It prints what `crit show` prints, with field names exactly as in the .proto files and
// enums by name. It does not use protobuf's JSON mapping because that prints bytes fields
// as base64, and unix socket names must stay readable: every bytes field is printed as a
// JSON string with one code point per byte (U+0000..U+00FF), bytes outside printable
// ASCII escaped as \u00XX. An abstract name reads "\u0000name", and a reader gets the
// exact bytes back by encoding the decoded string as Latin-1.
class JsonWriter {
 public:
  explicit JsonWriter(int indentStep = 4) : step_(indentStep) {}

  // Appends `msg` as an object at the current depth; `extraKey`/`extraValue`, when the
  // key is non-empty, are added as one more string member (raw data after an entry).
  void message(const google::protobuf::Message& msg, std::string_view extraKey = {},
               std::string_view extraValue = {});

  // Low-level pieces for documents around the entries.
  void beginObject();
  void endObject();
  void beginArray();
  void endArray();
  void key(std::string_view k);
  void string(std::string_view utf8);
  void bytes(std::string_view raw);
  void number(std::string_view literal);

  const std::string& str() const { return out_; }

 private:
  void field(const google::protobuf::Message& msg, const google::protobuf::FieldDescriptor* f);
  void value(const google::protobuf::Message& msg, const google::protobuf::FieldDescriptor* f,
             int index);
  void separator();
  void newline();

  std::string out_;
  int step_;
  int depth_ = 0;
  // Per nesting level: whether the container already has a member.
  std::string firstStack_;
  bool afterKey_ = false;
};

// JSON string literal for UTF-8 text (control characters escaped).
std::string jsonQuote(std::string_view utf8);
// JSON string literal for bytes, one code point per byte (see JsonWriter).
std::string jsonQuoteBytes(std::string_view raw);

}  // namespace crpipe
