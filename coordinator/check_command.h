#pragma once

#include <string>
#include <vector>

namespace crpipe {

// One kernel feature crpipe relies on, as found by really using it.
struct FeatureCheck {
  std::string name;
  bool ok = false;
  std::string detail;  // why it is missing, or a note
  bool optional = false;  // only makes crpipe faster: missing, `check` still passes
};

std::vector<FeatureCheck> checkKernelFeatures();
std::string renderFeatureChecks(const std::vector<FeatureCheck>& checks);

}  // namespace crpipe
