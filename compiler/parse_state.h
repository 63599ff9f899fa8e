/*
 * parse_state.h: what lexer.l and parser.y share: the parse state that
 * replaces every global a flex/bison pair would otherwise have.
 */
#ifndef PARSE_STATE_H
#define PARSE_STATE_H

#include "gqac.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>

/* Blocks nest a few deep in a valid file; deeper is reported, not followed. */
#define PARSE_MAX_DEPTH 32

typedef struct ParseState {
    Arena *arena;
    Diag *diag;
    Ast *ast;
    int line, col;               /* where the scanner is */
    Loc open[PARSE_MAX_DEPTH];   /* '{' not yet closed, for "unterminated" hints */
    int depth;
} ParseState;

Loc parse_loc_of(int first_line, int first_column, int last_line, int last_column);
#define parse_loc(l) parse_loc_of((l).first_line, (l).first_column, (l).last_line, (l).last_column)
void parse_open_brace(ParseState *ps, Loc at);
void parse_close_brace(ParseState *ps);

#include "parser.h"

#define YYSTYPE GQYSTYPE
#define YYLTYPE GQYLTYPE

#endif
