// Absolute paths without touching the file system: validating a recipe must not require its model
// and data to exist yet, so "." and ".." are removed by text, like Python's os.path.normpath.
#include <stdlib.h>
#include <string.h>
#include "recipes/recipe_internal.h"

char *dt_rpath_resolve(const char *base, const char *p) {
    size_t bl = p[0] == '/' ? 0 : strlen(base), pl = strlen(p);
    char *joined = malloc(bl + pl + 2);
    char *out = malloc(bl + pl + 2);
    if (!joined || !out) { free(joined); free(out); return NULL; }
    memcpy(joined, base, bl);
    joined[bl] = '/';
    memcpy(joined + bl + 1, p, pl + 1);

    // Copies one component at a time into out, which always starts with '/'; ".." drops the last one.
    size_t o = 0;
    for (char *s = joined; *s;) {
        while (*s == '/') s++;
        char *e = s;
        while (*e && *e != '/') e++;
        size_t n = (size_t)(e - s);
        if (n == 2 && s[0] == '.' && s[1] == '.') {
            while (o > 0 && out[o - 1] != '/') o--;
            if (o > 0) o--;   // the '/' before the dropped component; "/.." stays "/"
        } else if (n && !(n == 1 && s[0] == '.')) {
            out[o++] = '/';
            memcpy(out + o, s, n);
            o += n;
        }
        s = e;
    }
    if (!o) out[o++] = '/';
    out[o] = 0;
    free(joined);
    return out;
}

char *dt_rpath_dirname(const char *p) {
    const char *slash = strrchr(p, '/');
    if (!slash || slash == p) return strdup("/");
    return strndup(p, (size_t)(slash - p));
}
