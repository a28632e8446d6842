// ember::Half (float16) and ember::BFloat16, the element types of kFloat16 and kBFloat16.
// Defined in core/base/half.h, below kernels/, so that kernels compute with the same types
// (Note [16-bit floats] there); this is the name users include.
#pragma once

#include "ember/core/base/half.h"
