#pragma once

#include <google/protobuf/message.h>

#include <memory>
#include <string>
#include <string_view>

#include "common/image_format.h"
#include "common/result.h"

namespace crpipe {

// Decodes image entries by the protobuf type the image catalogue names for their kind,
// through the generated descriptor pool, so that any kind added to the catalogue is
// readable here without code of its own.

// The descriptor of an image kind's entries; nullptr for raw images (pages-N.img).
const google::protobuf::Descriptor* entryDescriptor(const ImageKind& kind);

// Parses one entry payload. The error names the protobuf type; callers add file and offset.
Result<std::unique_ptr<google::protobuf::Message>> decodeEntry(const ImageKind& kind,
                                                               std::string_view payload);

// Protobuf text format of a message, on one line (oneLine) or one field per line.
std::string entryText(const google::protobuf::Message& msg, bool oneLine);

// CRIT's name for an image kind: "fdinfo-%u" -> "FDINFO", "pipes-data" -> "PIPES_DATA".
std::string magicName(const ImageKind& kind);

// Lower-case hex of raw bytes.
std::string hexBytes(std::string_view data);

}  // namespace crpipe
