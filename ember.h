// ember's umbrella header: #include <ember/ember.h> brings in the whole public API.
#pragma once

#include "ember/core/autograd.h"
#include "ember/core/device.h"
#include "ember/core/dtype.h"
#include "ember/core/error.h"
#include "ember/core/grad_check.h"
#include "ember/core/memory/cuda_memory.h"
#include "ember/core/ops.h"
#include "ember/core/random.h"
#include "ember/core/tensor.h"
#include "ember/layers/init.h"
#include "ember/layers/layers.h"
#include "ember/layers/module.h"
#include "ember/python_free_api/data/fashion_mnist.h"
#include "ember/python_free_api/data/idx.h"
