#include "tools/thread_env.h"
#include <stdlib.h>

bool dt_thread_env_defaults(void) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return false; // the user's choice stands
    return setenv("OMP_WAIT_POLICY", "passive", 1) == 0;
}
