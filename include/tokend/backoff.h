#pragma once

#include "tokend/clock.h"
#include "tokend/config.h"

namespace tokend {

// The upper bound of the wait before retry number `failures` (1 = first retry):
// min(max, initial * multiplier^(failures-1)). For `decorrelated` the bound
// depends on the previous wait instead: min(max, 3 * previous), previous starting
// at `initial`.
Millis BackoffCap(const BackoffOptions& options, int failures, Millis previous);

// The wait before retry number `failures`, given the previous wait (for
// `decorrelated`; pass 0 for the first retry). Always within [0, BackoffCap].
//   none:          the cap
//   full:          uniform in [0, cap]
//   equal:         cap/2 + uniform in [0, cap/2]
//   decorrelated:  uniform in [initial, cap] (AWS "decorrelated jitter")
Millis BackoffDelay(const BackoffOptions& options, int failures, Millis previous,
                    Random& random);

}  // namespace tokend
