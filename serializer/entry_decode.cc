#include "serializer/entry_decode.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/text_format.h>

#include "protos/core.pb.h"
#include "protos/fdinfo.pb.h"
#include "protos/fs.pb.h"
#include "protos/inventory.pb.h"
#include "protos/mm.pb.h"
#include "protos/pagemap.pb.h"
#include "protos/pstree.pb.h"

namespace crpipe {

namespace {

// Generated descriptors register themselves only when their object file is linked. A
// static library drops object files nobody references, so reference the roots of every
// image message here; fdinfo.proto imports the remaining files.
void linkImageDescriptors() {
  (void)images::InventoryEntry::descriptor();
  (void)images::PstreeEntry::descriptor();
  (void)images::FdinfoEntry::descriptor();
  (void)images::FileEntry::descriptor();
  // task state (issue 4); core.proto imports creds, sa, siginfo, rlimit, timer, core_x86.
  (void)images::CoreEntry::descriptor();
  (void)images::MmEntry::descriptor();
  (void)images::PagemapEntry::descriptor();
  (void)images::FsEntry::descriptor();
}

}  // namespace

const google::protobuf::Descriptor* entryDescriptor(const ImageKind& kind) {
  if (kind.protoType.empty()) {
    return nullptr;
  }
  linkImageDescriptors();
  return google::protobuf::DescriptorPool::generated_pool()->FindMessageTypeByName(
      std::string(kind.protoType));
}

Result<std::unique_ptr<google::protobuf::Message>> decodeEntry(const ImageKind& kind,
                                                               std::string_view payload) {
  const auto* desc = entryDescriptor(kind);
  if (desc == nullptr) {
    return failMsg("no protobuf type for image kind " + std::string(kind.pattern));
  }
  const auto* proto = google::protobuf::MessageFactory::generated_factory()->GetPrototype(desc);
  std::unique_ptr<google::protobuf::Message> msg(proto->New());
  // Parse first and check required fields apart: ParseFromArray would log to stderr.
  if (!msg->ParsePartialFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return failMsg("undecodable " + desc->full_name() + " (" + std::to_string(payload.size()) +
                   " bytes)");
  }
  if (!msg->IsInitialized()) {
    return failMsg("undecodable " + desc->full_name() + ": missing required fields " +
                   msg->InitializationErrorString());
  }
  return msg;
}

std::string entryText(const google::protobuf::Message& msg, bool oneLine) {
  google::protobuf::TextFormat::Printer printer;
  printer.SetSingleLineMode(oneLine);
  printer.SetUseUtf8StringEscaping(false);
  std::string out;
  printer.PrintToString(msg, &out);
  while (!out.empty() && (out.back() == ' ' || out.back() == '\n')) {
    out.pop_back();
  }
  return out;
}

std::string magicName(const ImageKind& kind) {
  std::string out;
  for (char c : kind.pattern) {
    if (c == '%') {
      break;
    }
    out.push_back(c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  while (!out.empty() && out.back() == '_') {
    out.pop_back();
  }
  return out;
}

std::string hexBytes(std::string_view data) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(data.size() * 2);
  for (unsigned char c : data) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

}  // namespace crpipe
