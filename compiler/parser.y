/*
 * parser.y: tokens -> Ast.  A pure (reentrant) LALR(1) parser with
 * locations and LAC, so syntax errors name what was expected where it was
 * expected.  Needs: lexer.l.  Provides: parse_source().
 *
 * The grammar knows only the shape of a file: a model name and nested
 * `key = expression` items and `name [kind] { ... }` blocks.  Which keys
 * exist is the schema's business (sema.c), so adding a key never touches
 * the grammar.  Every node lives in the compilation's arena, which is why
 * no %destructor is needed: discarded values are freed with the arena.
 */
%define api.pure full
%define api.prefix {gqy}
%define api.token.prefix {TOK_}
%define parse.error custom
%define parse.lac full
%locations
%expect 0

%code requires {
#include "gqac.h"
typedef void *yyscan_t;
struct ParseState;
typedef struct { Item *head, *tail; } ItemList;
typedef struct { Expr *head, *tail; int64_t n; int depth; } ExprList;
}

%param {yyscan_t scanner}
%parse-param {struct ParseState *ps}

%union {
    int64_t ival;
    double fval;
    const char *str;
    Expr *expr;
    Item *item;
    ItemList list;
    ExprList exprs;
}

%code {
#include "parse_state.h"
#include "lexer.h"

static Expr *new_expr(ParseState *ps, ExprKind kind, YYLTYPE loc);
static Expr *new_binary(ParseState *ps, char op, Expr *l, Expr *r);
static Expr *with_loc(ParseState *ps, const Expr *e, YYLTYPE loc);
static void check_depth(ParseState *ps, Expr *e, int below);
static Expr *new_name(ParseState *ps, const char *a, const char *b, YYLTYPE loc);
static Item *new_item(ParseState *ps, const char *key, YYLTYPE loc);
static Item *new_block(ParseState *ps, const char *key, YYLTYPE loc, const char *kind,
                       YYLTYPE kind_loc, ItemList children);
static ItemList list_append(ItemList l, Item *it);
static ExprList exprs_append(ExprList l, Expr *e);
static Expr *new_list(ParseState *ps, ExprList l, YYLTYPE loc);
static void gqyerror(YYLTYPE *loc, yyscan_t scanner, ParseState *ps, const char *msg);
}

%token MODEL "'model'"
%token <str> IDENT "identifier"
%token <str> STRING "string"
%token <ival> INT "integer"
%token <fval> FLOAT "number"
%token <ival> BOOL "boolean"
%token INVALID "invalid token"
%token END 0 "end of file"

%type <expr> expr name
%type <item> item
%type <list> items
%type <exprs> elements

%left '+' '-'
%left '*' '/'
%precedence NEG

%%

file
    : MODEL STRING '{' items '}'
        { ps->ast->name = $2; ps->ast->name_loc = parse_loc(@2); ps->ast->items = $4.head; }
    | MODEL error
        { ps->ast->items = NULL; }
    ;

items
    : %empty            { $$ = (ItemList){NULL, NULL}; }
    | items item        { $$ = list_append($1, $2); }
    | items error       { $$ = $1; }
    ;

item
    : IDENT '=' expr                    { $$ = new_item(ps, $1, @1); $$->value = $3; }
    | IDENT '{' items '}'               { $$ = new_block(ps, $1, @1, NULL, @1, $3); }
    | IDENT IDENT '{' items '}'         { $$ = new_block(ps, $1, @1, $2, @2, $4); }
    ;

expr
    : INT                   { $$ = new_expr(ps, EX_INT, @1); $$->ival = $1; }
    | FLOAT                 { $$ = new_expr(ps, EX_FLOAT, @1); $$->fval = $1; }
    | BOOL                  { $$ = new_expr(ps, EX_BOOL, @1); $$->ival = $1; }
    | STRING                { $$ = new_expr(ps, EX_STRING, @1); $$->str = $1; }
    | name
    | '(' expr ')'          { $$ = with_loc(ps, $2, @$); }
    | '-' expr %prec NEG    { $$ = new_expr(ps, EX_NEG, @$); $$->lhs = $2; check_depth(ps, $$, $2->depth); }
    | expr '+' expr         { $$ = new_binary(ps, '+', $1, $3); }
    | expr '-' expr         { $$ = new_binary(ps, '-', $1, $3); }
    | expr '*' expr         { $$ = new_binary(ps, '*', $1, $3); }
    | expr '/' expr         { $$ = new_binary(ps, '/', $1, $3); }
    | '[' ']'               { $$ = new_list(ps, (ExprList){NULL, NULL, 0, 0}, @$); }
    | '[' elements ']'      { $$ = new_list(ps, $2, @$); }
    | '[' elements ',' ']'  { $$ = new_list(ps, $2, @$); }
    ;

/* A list's elements are expressions so that sema, not the grammar, says
 * what may stand in one (a type word) and where a list may stand. */
elements
    : expr                  { $$ = exprs_append((ExprList){NULL, NULL, 0, 0}, $1); }
    | elements ',' expr     { $$ = exprs_append($1, $3); }
    ;

name
    : IDENT                 { $$ = new_name(ps, $1, NULL, @1); }
    | IDENT '.' IDENT       { $$ = new_name(ps, $1, $3, @$); }
    ;

%%

Loc parse_loc_of(int first_line, int first_column, int last_line, int last_column) {
    Loc l = {first_line, first_column, last_line == first_line ? last_column : first_column + 1};
    return l;
}

void parse_open_brace(ParseState *ps, Loc at) {
    if (ps->depth < PARSE_MAX_DEPTH)
        ps->open[ps->depth] = at;
    ps->depth++;
}

void parse_close_brace(ParseState *ps) {
    if (ps->depth > 0)
        ps->depth--;
}

static Expr *new_expr(ParseState *ps, ExprKind kind, YYLTYPE loc) {
    Expr *e = arena_alloc(ps->arena, sizeof *e);
    e->kind = kind;
    e->loc = parse_loc(loc);
    return e;
}

/* A parenthesized expression: the same node, spanning its parentheses. */
static Expr *with_loc(ParseState *ps, const Expr *e, YYLTYPE loc) {
    Expr *copy = arena_alloc(ps->arena, sizeof *copy);
    *copy = *e;
    copy->loc = parse_loc(loc);
    return copy;
}

/* The span runs from the left operand to the right one when both sit on
 * one line, so the caret underlines the whole expression. */
/* Bison's stack bounds nesting by parentheses, but not a long chain like
 * 1+1+1+..., whose left-deep tree sema would walk recursively. */
#define MAX_EXPR_DEPTH 256

static void check_depth(ParseState *ps, Expr *e, int below) {
    e->depth = below + 1;
    if (e->depth == MAX_EXPR_DEPTH)
        diag_error(ps->diag, e->loc, "expression nested too deeply");
}

static Expr *new_binary(ParseState *ps, char op, Expr *l, Expr *r) {
    Expr *e = arena_alloc(ps->arena, sizeof *e);
    e->kind = EX_BINARY;
    e->op = op;
    e->lhs = l;
    e->rhs = r;
    e->loc = l->loc;
    if (r->loc.line == l->loc.line)
        e->loc.end_col = r->loc.end_col;
    check_depth(ps, e, l->depth > r->depth ? l->depth : r->depth);
    return e;
}

static Expr *new_name(ParseState *ps, const char *a, const char *b, YYLTYPE loc) {
    Expr *e = new_expr(ps, EX_NAME, loc);
    e->str = b ? arena_printf(ps->arena, "%s.%s", a, b) : a;
    return e;
}

static Item *new_item(ParseState *ps, const char *key, YYLTYPE loc) {
    Item *it = arena_alloc(ps->arena, sizeof *it);
    it->key = key;
    it->loc = parse_loc(loc);
    return it;
}

static Item *new_block(ParseState *ps, const char *key, YYLTYPE loc, const char *kind,
                       YYLTYPE kind_loc, ItemList children) {
    Item *it = new_item(ps, key, loc);
    it->is_block = true;
    it->kind = kind;
    it->kind_loc = parse_loc(kind_loc);
    it->children = children.head;
    return it;
}

static ItemList list_append(ItemList l, Item *it) {
    if (l.tail)
        l.tail->next = it;
    else
        l.head = it;
    l.tail = it;
    return l;
}

static ExprList exprs_append(ExprList l, Expr *e) {
    if (l.tail)
        l.tail->next = e;
    else
        l.head = e;
    l.tail = e;
    l.n++;
    if (e->depth > l.depth)
        l.depth = e->depth;
    return l;
}

static Expr *new_list(ParseState *ps, ExprList l, YYLTYPE loc) {
    Expr *e = new_expr(ps, EX_LIST, loc);
    e->lhs = l.head;
    e->ival = l.n;
    check_depth(ps, e, l.depth);
    return e;
}

/* How a token reads in a message: its text for words and literals
 * ("'foo'"), its name otherwise ("'{'", "end of file"). */
static void describe(char *out, size_t size, ParseState *ps, yysymbol_kind_t sym, Loc at) {
    bool literal = sym == YYSYMBOL_IDENT || sym == YYSYMBOL_INT || sym == YYSYMBOL_FLOAT ||
                   sym == YYSYMBOL_BOOL || sym == YYSYMBOL_MODEL;
    size_t len;
    const char *line = literal ? diag_line(ps->diag->src, at.line, &len) : NULL;
    int n = at.end_col - at.col;
    if (line && n > 0 && n <= 40 && (size_t)(at.end_col - 1) <= len)
        snprintf(out, size, "'%.*s'", n, line + at.col - 1);
    else
        snprintf(out, size, "%s", yysymbol_name(sym));
}

/* "expected '=' or '{' before 'foo'", "expected an expression before '}'",
 * with a note pointing at the unclosed '{' when the file ends in a block. */
static int yyreport_syntax_error(const yypcontext_t *ctx, yyscan_t scanner, ParseState *ps) {
    (void)scanner;
    yysymbol_kind_t got = yypcontext_token(ctx);
    if (got == YYSYMBOL_INVALID)
        return 0; /* the lexer has said what is wrong */
    yysymbol_kind_t expected[8];
    int n = yypcontext_expected_tokens(ctx, expected, 8);
    Loc at = parse_loc(*yypcontext_location(ctx));
    char seen[64], msg[256];
    size_t len = 0;
    bool expression = false;
    describe(seen, sizeof seen, ps, got, at);
    for (int i = 0; i < n; i++)
        expression = expression || expected[i] == YYSYMBOL_INT;
    if (expression) {
        diag_error(ps->diag, at, "expected an expression before %s", seen);
    } else if (n == 0 || n > 5) {
        diag_error(ps->diag, at, "unexpected %s", seen);
    } else {
        for (int i = 0; i < n; i++)
            len += (size_t)snprintf(msg + len, sizeof msg - len, "%s%s",
                                    i == 0 ? "" : i == n - 1 ? " or " : ", ",
                                    yysymbol_name(expected[i]));
        diag_error(ps->diag, at, "expected %s before %s", msg, seen);
    }
    if (got == YYSYMBOL_YYEOF && ps->depth > 0 && ps->depth <= PARSE_MAX_DEPTH)
        diag_note(ps->diag, ps->open[ps->depth - 1], "to match this '{'");
    return 0;
}

/* Bison's only other message is stack exhaustion, which only parentheses
 * nested thousands deep can cause. */
static void gqyerror(YYLTYPE *loc, yyscan_t scanner, ParseState *ps, const char *msg) {
    (void)scanner;
    (void)msg;
    diag_error(ps->diag, parse_loc(*loc), "expression nested too deeply");
}

Ast *parse_source(Arena *a, Diag *d) {
    ParseState ps = {.arena = a, .diag = d, .line = 1, .col = 1};
    ps.ast = arena_alloc(a, sizeof *ps.ast);
    ps.ast->arena = a;
    yyscan_t scanner;
    if (gqylex_init_extra(&ps, &scanner) != 0) {
        diag_error_file(d, "cannot start the scanner (out of memory)");
        return NULL;
    }
    size_t bom = diag_bom(d->src);
    if (d->src->len - bom > INT_MAX) { /* flex takes an int */
        diag_error_file(d, "the file is larger than %d bytes", INT_MAX);
        gqylex_destroy(scanner);
        return NULL;
    }
    YY_BUFFER_STATE buf = gqy_scan_bytes(d->src->text + bom, (int)(d->src->len - bom), scanner);
    gqyparse(scanner, &ps); /* every failure has been reported */
    gqy_delete_buffer(buf, scanner);
    gqylex_destroy(scanner);
    return ps.ast;
}
