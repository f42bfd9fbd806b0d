#pragma once

#include <string>

#include "common/image_format.h"
#include "common/result.h"

namespace crpipe {

// `crpipe show`: image files as JSON (like crit show) or protobuf text. A path that is a
// directory shows all its images, keyed by file name; a file shows as one document.
Result<std::string> showImages(const std::string& path, bool text);

// One parsed image file as JSON / as text.
Result<std::string> imageJson(const ImageFile& file);
Result<std::string> imageText(const ImageFile& file);

}  // namespace crpipe
