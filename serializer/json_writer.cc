#include "serializer/json_writer.h"

#include <google/protobuf/descriptor.h>

#include <cstdio>
#include <vector>

namespace crpipe {

namespace gp = google::protobuf;

namespace {

void appendEscaped(std::string& out, unsigned char c) {
  switch (c) {
    case '"':
      out += "\\\"";
      return;
    case '\\':
      out += "\\\\";
      return;
    case '\n':
      out += "\\n";
      return;
    case '\t':
      out += "\\t";
      return;
    case '\r':
      out += "\\r";
      return;
    default:
      break;
  }
  char buf[8];
  snprintf(buf, sizeof(buf), "\\u%04x", c);
  out += buf;
}

}  // namespace

std::string jsonQuote(std::string_view utf8) {
  std::string out = "\"";
  for (unsigned char c : utf8) {
    if (c < 0x20 || c == '"' || c == '\\' || c == 0x7f) {
      appendEscaped(out, c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out += "\"";
  return out;
}

std::string jsonQuoteBytes(std::string_view raw) {
  std::string out = "\"";
  for (unsigned char c : raw) {
    if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
      appendEscaped(out, c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out += "\"";
  return out;
}

void JsonWriter::newline() {
  out_.push_back('\n');
  out_.append(static_cast<size_t>(depth_ * step_), ' ');
}

void JsonWriter::separator() {
  if (afterKey_) {
    afterKey_ = false;
    return;
  }
  if (firstStack_.empty()) {
    return;
  }
  if (firstStack_.back() == '0') {
    out_.push_back(',');
  }
  firstStack_.back() = '0';
  newline();
}

void JsonWriter::beginObject() {
  separator();
  out_.push_back('{');
  firstStack_.push_back('1');
  ++depth_;
}

void JsonWriter::endObject() {
  bool empty = firstStack_.back() == '1';
  firstStack_.pop_back();
  --depth_;
  if (!empty) {
    newline();
  }
  out_.push_back('}');
}

void JsonWriter::beginArray() {
  separator();
  out_.push_back('[');
  firstStack_.push_back('1');
  ++depth_;
}

void JsonWriter::endArray() {
  bool empty = firstStack_.back() == '1';
  firstStack_.pop_back();
  --depth_;
  if (!empty) {
    newline();
  }
  out_.push_back(']');
}

void JsonWriter::key(std::string_view k) {
  separator();
  out_ += jsonQuote(k);
  out_ += ": ";
  afterKey_ = true;
}

void JsonWriter::string(std::string_view utf8) {
  separator();
  out_ += jsonQuote(utf8);
}

void JsonWriter::bytes(std::string_view raw) {
  separator();
  out_ += jsonQuoteBytes(raw);
}

void JsonWriter::number(std::string_view literal) {
  separator();
  out_ += literal;
}

void JsonWriter::message(const gp::Message& msg, std::string_view extraKey,
                         std::string_view extraValue) {
  beginObject();
  std::vector<const gp::FieldDescriptor*> fields;
  msg.GetReflection()->ListFields(msg, &fields);
  for (const auto* f : fields) {
    field(msg, f);
  }
  if (!extraKey.empty()) {
    key(extraKey);
    string(extraValue);
  }
  endObject();
}

void JsonWriter::field(const gp::Message& msg, const gp::FieldDescriptor* f) {
  key(f->name());
  if (!f->is_repeated()) {
    value(msg, f, -1);
    return;
  }
  beginArray();
  int n = msg.GetReflection()->FieldSize(msg, f);
  for (int i = 0; i < n; ++i) {
    value(msg, f, i);
  }
  endArray();
}

void JsonWriter::value(const gp::Message& msg, const gp::FieldDescriptor* f, int i) {
  const gp::Reflection* r = msg.GetReflection();
  bool rep = i >= 0;
  switch (f->cpp_type()) {
    case gp::FieldDescriptor::CPPTYPE_INT32:
      number(std::to_string(rep ? r->GetRepeatedInt32(msg, f, i) : r->GetInt32(msg, f)));
      return;
    case gp::FieldDescriptor::CPPTYPE_INT64:
      number(std::to_string(rep ? r->GetRepeatedInt64(msg, f, i) : r->GetInt64(msg, f)));
      return;
    case gp::FieldDescriptor::CPPTYPE_UINT32:
      number(std::to_string(rep ? r->GetRepeatedUInt32(msg, f, i) : r->GetUInt32(msg, f)));
      return;
    case gp::FieldDescriptor::CPPTYPE_UINT64:
      number(std::to_string(rep ? r->GetRepeatedUInt64(msg, f, i) : r->GetUInt64(msg, f)));
      return;
    case gp::FieldDescriptor::CPPTYPE_DOUBLE:
      number(std::to_string(rep ? r->GetRepeatedDouble(msg, f, i) : r->GetDouble(msg, f)));
      return;
    case gp::FieldDescriptor::CPPTYPE_FLOAT:
      number(std::to_string(rep ? r->GetRepeatedFloat(msg, f, i) : r->GetFloat(msg, f)));
      return;
    case gp::FieldDescriptor::CPPTYPE_BOOL:
      number((rep ? r->GetRepeatedBool(msg, f, i) : r->GetBool(msg, f)) ? "true" : "false");
      return;
    case gp::FieldDescriptor::CPPTYPE_ENUM: {
      const gp::EnumValueDescriptor* e =
          rep ? r->GetRepeatedEnum(msg, f, i) : r->GetEnum(msg, f);
      string(e->name());
      return;
    }
    case gp::FieldDescriptor::CPPTYPE_STRING: {
      std::string scratch;
      const std::string& s = rep ? r->GetRepeatedStringReference(msg, f, i, &scratch)
                                 : r->GetStringReference(msg, f, &scratch);
      if (f->type() == gp::FieldDescriptor::TYPE_BYTES) {
        bytes(s);
      } else {
        string(s);
      }
      return;
    }
    case gp::FieldDescriptor::CPPTYPE_MESSAGE:
      message(rep ? r->GetRepeatedMessage(msg, f, i) : r->GetMessage(msg, f));
      return;
  }
}

}  // namespace crpipe
