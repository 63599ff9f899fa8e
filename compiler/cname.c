/*
 * cname.c: the only way input text reaches generated C.  A model's name is
 * data, not code: as an identifier it is mangled to [a-z0-9_] and kept off
 * C's keywords and reserved names; as a string it is escaped so that no
 * quote, backslash, trigraph (C99 still has them) or control byte survives.
 */
#include "gqac.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static const char *const keywords[] = {
    "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else",
    "enum", "extern", "float", "for", "goto", "if", "inline", "int", "long", "register",
    "restrict", "return", "short", "signed", "sizeof", "static", "struct", "switch", "typedef",
    "union", "unsigned", "void", "volatile", "while", "asm", "bool", "true", "false", NULL,
};

static bool is_keyword(const char *s) {
    for (int i = 0; keywords[i]; i++)
        if (!strcmp(keywords[i], s))
            return true;
    return false;
}

/* Prefixes longer than this make unreadable symbols and risk old linkers. */
#define MAX_PREFIX 48

const char *cname_check(const char *s) {
    size_t n = strlen(s);
    if (n == 0)
        return "it is empty";
    if (n > MAX_PREFIX)
        return "it is longer than 48 characters";
    if (!isalpha((unsigned char)s[0]) && s[0] != '_')
        return "it must start with a letter or '_'";
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_')
            return "it may hold only letters, digits and '_'";
    if (s[0] == '_' && (s[1] == '_' || isupper((unsigned char)s[1])))
        return "names starting with '__' or '_' and a capital are reserved for C";
    if ((!strncasecmp(s, "gqa", 3) || !strncasecmp(s, "gqr", 3)) && (s[3] == '\0' || s[3] == '_'))
        return "the gqa and gqr prefixes belong to gqac's API and runtime";
    if (is_keyword(s))
        return "it is a C keyword";
    return NULL;
}

char *cname_mangle(Arena *a, const char *name) {
    size_t n = strlen(name);
    if (n > MAX_PREFIX - 2)
        n = MAX_PREFIX - 2;
    char *out = arena_alloc(a, n + 3), *o = out;
    if (!isalpha((unsigned char)name[0]))
        *o++ = 'm', *o++ = '_';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        char m = isalnum(c) && c < 0x80 ? (char)tolower(c) : '_';
        if (m != '_' || (o > out && o[-1] != '_'))
            *o++ = m;
    }
    while (o > out + 1 && o[-1] == '_')
        o--;
    *o = '\0';
    if (cname_check(out))
        return arena_printf(a, "m_%s", out);
    return out;
}

char *cname_escape(Arena *a, const char *s) {
    size_t n = strlen(s);
    char *out = arena_alloc(a, 4 * n + 1), *o = out;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\' || c == '?')
            *o++ = '\\', *o++ = (char)c;
        else if (c >= 0x20 && c < 0x7f)
            *o++ = (char)c;
        else
            o += sprintf(o, "\\%03o", c);
    }
    *o = '\0';
    return out;
}
