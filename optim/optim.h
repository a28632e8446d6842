// Everything in optim/: the optimizers (SGD, Adam, AdamW, RMSprop), LR schedules,
// gradient clipping and the gradient scaler.
#pragma once

#include "ember/optim/adam.h"
#include "ember/optim/clip_grad.h"
#include "ember/optim/grad_scaler.h"
#include "ember/optim/lr_scheduler.h"
#include "ember/optim/optimizer.h"
#include "ember/optim/rmsprop.h"
#include "ember/optim/sgd.h"
