"""Make a response read as it renders, before any answer is looked for in it.

Every extraction step and every guard (rewards.math_extract, rewards.math_guards) sees the text this
returns, so a trick of notation cannot reach one step and miss another. In order:

0. Every run of whitespace becomes one space, or one newline if it holds one: padding can neither stretch
   a phrase ("not" + 30,000 spaces + "20" is still "not 20") nor cost the linear, bounded regexes work.

1. Superscript and subscript digits become ``^{..}`` / ``_{..}`` (NFKC would turn "3²" into "32"); a raised
   sign alone is the sign.
2. Unicode NFKC (fullwidth, math-bold and small-form characters such as U+FE62 to ASCII), then format
   characters (category Cf: zero-width space and joiner, soft hyphen, BOM) are dropped, every other
   decimal digit system (Arabic-Indic, Devanagari, ...) becomes ASCII digits, and operator look-alikes
   (U+2212 minus, en dash, ⊕, ∔, ➕, ×, ÷, ·, and every symbol or format character whose Unicode name
   says PLUS, MINUS, TIMES, MULTIPLICATION or DIVISION: ⨁, ⊞, invisible plus U+2064) become the operator.
3. Invisible content is removed: ``\\phantom``/``\\hphantom``/``\\vphantom``, white or transparent text
   (``\\textcolor{white}{..}``, ``{\\color{white} ..}``, ``[rgb]{1,1,1}``, ``#fff``), ``\\scalebox{0}``,
   ``\\iffalse..\\fi``, HTML comments and hidden HTML spans. What a reader cannot see is not an answer.
   The rule is strict, since a policy can choose any disguise: a colour other than a plain named dark one
   (black, red, blue, ...) hides; every ``\\scalebox``/``\\resizebox``/``\\raisebox`` hides what it holds,
   whatever its size; an HTML element with a ``style``/``color``/``hidden`` attribute hides; TeX comments
   (``% ..``), ``\\begin{comment}``, ``<script>``.., markdown reference definitions, image alt text and link
   targets are dropped, and HTML tags (with their attributes) are removed. A response that defines macros
   (``\\def``, ``\\newcommand``, ``\\let``, ``\\colorlet``: `defines_macros`) cannot be read safely at all.
   Operators inside it are kept, though: ``0 \\textcolor{white}{+} 17`` must not read as the answer 17.
4. A ``` fence holding only a number becomes that number (a fence with code stays, and extraction drops
   it: code can print anything); inline code around a number, markdown bold/italic around text are
   stripped (``**20**``, ``17 + 3 = **20**``).
5. TeX spacing (``\\enspace``, ``\\quad``, ``\\hspace{..}``, ``\\;``, ``~``, ``&``) becomes a space (but a ``~`` just
   before a number after "answer", "is", ":" or at a line start is "approximately", a hedge), after
   thin-space thousands (``1\\,000``) are joined; an operator wrapped in ``\\text``/``\\texttt``/
   ``\\mathbin``.. becomes the operator; style wrappers (``\\underline``, ``\\mathbf``, ``\\bf``,
   ``\\displaystyle``, ``\\left(``..``\\right)``) are unwrapped.
"""

from __future__ import annotations

import re
import unicodedata

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻", "0123456789+-")
_SUBSCRIPTS = str.maketrans("₀₁₂₃₄₅₆₇₈₉₊₋", "0123456789+-")
_SUP_RE = re.compile("[⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻]+")
_SUB_RE = re.compile("[₀₁₂₃₄₅₆₇₈₉₊₋]+")
_OPERATOR_CHARS = {"\u2212": "-", "\ufe63": "-", "\u2013": "-", "\u2796": "-", "\u2296": "-", "\u2216": "-",
                   "\u2295": "+", "\u2214": "+", "\u2795": "+", "\u00d7": r"\times ", "\u2715": r"\times ",
                   "\u2297": r"\times ", "\u00f7": r"\div ", "\u2797": r"\div ", "\u2215": "/", "\u2044": "/",
                   "\u22c5": r"\cdot ", "\u00b7": r"\cdot ", "\u2219": r"\cdot "}

# --- invisible content -----------------------------------------------------------------------------------
_VISIBLE_COLOR = re.compile(
    r"\s{0,5}+(?:black|red|blue|green|brown|purple|violet|teal|olive|magenta|orange|gray|grey|darkgray|darkgrey)\s{0,5}+",
    re.I)
"""The only colours that keep text readable: plain named dark ones. Any other colour argument (white, snow,
"black!0", "[RGB]{254,254,254}", "[HTML]{FFFFFE}", a macro, "wh\\relax ite") hides what it colours."""
_TOKEN_RE = re.compile(r"\\[A-Za-z]+|\\.|[{}]", re.S)
_PHANTOM = {r"\phantom", r"\hphantom", r"\vphantom"}
_COLOR_ARG_RE = re.compile(r"\s*((?:\[[^\]]{0,20}\])?\{[^{}]{0,40}\})")
_BOX_ARGS = {r"\scalebox": 1, r"\resizebox": 2, r"\raisebox": 1, r"\rotatebox": 1}
"""Boxes that scale, resize or move what they hold, by the number of size arguments before it: whatever
their size, what they hold is not read (a size can shrink it to nothing or move it off the page)."""
_BOX_ARG_RE = re.compile(r"\s{0,5}+(?:\[[^\]]{0,40}+\]\s{0,5}+)*+(?:\{[^{}]{0,40}+\})?")
_IFFALSE_RE = re.compile(r"\\if(?:false\b|\s{0,5}+0\s{0,5}+1).*?(?:\\fi\b|$)", re.S)  # "\\if0 1" is false too
_HTML_COMMENT_RE = re.compile(r"<!--.*?(?:-->|$)", re.S)
_HTML_HIDDEN_RE = re.compile(
    r"<([A-Za-z][A-Za-z0-9]{0,10}+)\b(?=[^<>]{0,300}+>)[^<>]{0,300}?(?:\bstyle\s{0,5}+=|\bcolor\s{0,5}+="
    r"|\bhidden\b|\bclass\s{0,5}+=\s{0,5}+[\"']?\s{0,5}+hidden)[^<>]{0,300}+>.*?(?:</\1\s{0,5}+>|$)", re.S | re.I)
_SPACES_RE = re.compile(r"\s*")
_ONE_TOKEN_RE = re.compile(r"\\[A-Za-z]+|.?", re.S)
_MARKUP_RE = re.compile(r"<!--|-->|<[^<>]{0,300}>")  # the delimiters of hidden HTML are no operators
_KEPT_OPERATOR_RE = re.compile(r"[+\-*/]|\\(?:times|cdot|div|pm|mp)(?![A-Za-z])")

_WHITESPACE_RUN_RE = re.compile(r"\s{2,}+")

# --- markdown and TeX dress ------------------------------------------------------------------------------
_NUMBER = r"-?\d[\d,]*(?:\.\d+)?"
_FENCED_NUMBER_RE = re.compile(rf"```[A-Za-z]*[ \t]*\n?\s*({_NUMBER})\s*```")
_INLINE_CODE_NUMBER_RE = re.compile(rf"(?<!`)`\s*({_NUMBER})\s*`(?!`)")
_BOLD_RE = re.compile(r"(?<![\w*])(\*\*|__)(?=\S)([^*_\n]{1,200}?)(?<=\S)\1(?![\w*])")  # bounded: linear
_ITALIC_NUMBER_RE = re.compile(rf"(?<![\w*)\\])([*_])({_NUMBER})\1(?![\w*(])")
_TILDE_APPROX_RE = re.compile(r"(?:^|(?<=[:(])|(?<=\bis)|(?<=\bwas)|(?<=\banswer))[ \t]*+~(?=[ \t]?-?\d)", re.I | re.M)
"""A "~" right before a number after "answer", "is", "was", ":", "(" or at a line start is "approximately" ("Answer: ~20"),
not TeX's non-breaking space; it becomes that word, which the guards read as a hedge."""
_THIN_SEP = r"(?:\\,|\\ |\\;|\\:|\\!|~|\{,\}|\\thinspace\s{0,5}|[\u2009\u202f\u00a0])"
_THIN_THOUSANDS_RE = re.compile(rf"(?<![\d.])(\d{{1,3}})((?:{_THIN_SEP}\d{{3}})+)(?!\d)")
_SPACING_RE = re.compile(
    r"\\(?:q?quad|enspace|enskip|thinspace|medspace|thickspace|negthinspace|negmedspace|negthickspace"
    r"|nobreakspace|space)(?![A-Za-z])|\\[hv]space\*?\s*\{[^{}]{0,40}\}"
    r"|\\m?(?:kern|skip|hskip|mskip)\s*-?[\d.]+\s*(?:[a-z]{2})?|\\[,;:!> ]|~|(?<!\\)&")
_OP = r"[+\-*/=]|\\(?:times|cdot|div|pm|mp)(?![A-Za-z])"
_WRAPPED_OPERATOR_RE = re.compile(
    rf"\\(?:text[a-z]*|math[a-z]*|mbox|hbox|operatorname\*?|boldsymbol|bm|underline|emph)\s*\{{\s*({_OP})\s*\}}")
_STYLE_WRAP_RE = re.compile(
    r"\\(?:underline|mathbf|boldsymbol|bm|textbf|textit|textsl|emph|mathit|mathsf|mathtt|texttt|textrm|textsf"
    r"|textnormal|textup|mathnormal|pmb)\s*\{([^{}]*)\}")
_STYLE_SWITCH_RE = re.compile(
    r"\\(?:displaystyle|textstyle|scriptstyle|scriptscriptstyle|bf|it|rm|sf|tt|sl|bfseries|mdseries|itshape"
    r"|upshape|boldmath|unboldmath|tiny|scriptsize|footnotesize|small|normalsize|large|Large|LARGE|huge|Huge"
    r"|limits|nolimits)(?![A-Za-z])\s*")
_DELIMITER_SIZE_RE = re.compile(r"\\(?:left|right)\s*\.|\\(?:left|right|[bB]igg?[lrm]?)(?![A-Za-z])\s*")


_NAMED_OPERATORS = (("PLUS-MINUS", r"\pm "), ("MINUS-OR-PLUS", r"\mp "), ("PLUS", "+"), ("MINUS", "-"),
                    ("TIMES", r"\times "), ("MULTIPLICATION", r"\times "), ("CROSS PRODUCT", r"\times "),
                    ("DIVISION", r"\div "), ("DOT OPERATOR", r"\cdot "))
"""Any symbol or format character whose Unicode name says it is a plus, minus, times or division sign
(⨁, ⊞, ⨥, ⨢, the invisible plus and times U+2064/U+2062, ...) is that operator: a hand list misses some."""
_OPERATOR_CATEGORIES = {"Sm", "So", "Sk", "Cf", "Pd", "Po"}


def _named_operator(c: str, category: str) -> str | None:
    if category not in _OPERATOR_CATEGORIES:
        return None
    name = unicodedata.name(c, "")
    return next((op for word, op in _NAMED_OPERATORS if word in name), None)


def _char(c: str) -> str:
    if c in _OPERATOR_CHARS:
        return _OPERATOR_CHARS[c]
    category = unicodedata.category(c)
    named = _named_operator(c, category)
    if named is not None:
        return f" {named} " if category == "Cf" else named
    if category == "Cf":
        return ""
    if category == "Nd" and not c.isascii():
        return str(unicodedata.decimal(c))
    return c


def _script(mark: str, run: str) -> str:
    """"10⁻³" -> "10^{-3}", but a raised sign alone ("0 ⁺ 17") is the operator itself."""
    return f"{mark}{{{run}}}" if any(c.isdigit() for c in run) else f" {run} "


def _unicode(text: str) -> str:
    text = _SUP_RE.sub(lambda m: _script("^", m.group().translate(_SUPERSCRIPTS)), text)
    text = _SUB_RE.sub(lambda m: _script("_", m.group().translate(_SUBSCRIPTS)), text)
    text = unicodedata.normalize("NFKC", text)
    if text.isascii():
        return text
    return "".join(_char(c) for c in text)


def _groups(text: str) -> tuple[dict[int, int], list[tuple[int, str, int]]]:
    """(close index of every "{", the commands with the "{" that encloses each: -1 at top level)."""
    close: dict[int, int] = {}
    stack: list[int] = []
    commands: list[tuple[int, str, int]] = []
    for m in _TOKEN_RE.finditer(text):
        tok = m.group()
        if tok == "{":
            stack.append(m.start())
        elif tok == "}":
            if stack:
                close[stack.pop()] = m.start()
        elif tok in _PHANTOM or tok in (r"\textcolor", r"\color") or tok in _BOX_ARGS:
            commands.append((m.start(), tok, stack[-1] if stack else -1))
    return close, commands


def _invisible_color(text: str, at: int) -> int | None:
    """End of a colour argument at text[at:] unless it is a plain named dark colour (`_VISIBLE_COLOR`), else None;
    no readable argument at all hides too."""
    arg = _COLOR_ARG_RE.match(text, at)
    if not arg:
        return at
    spec = arg.group(1)
    return None if spec.startswith("{") and _VISIBLE_COLOR.fullmatch(spec[1:-1]) else arg.end()


def _hidden_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every invisible TeX construct. An unclosed group runs to the end of the text;
    a top-level \\color{white} to the end of its line."""
    close, commands = _groups(text)
    spans = []
    for start, tok, enclosing in commands:
        after = start + len(tok)
        if tok in (r"\color", r"\textcolor"):
            after = _invisible_color(text, after)
            if after is None:
                continue
            if tok == r"\color":
                line_end = text.find("\n", after)
                top_end = len(text) if line_end < 0 else line_end
                spans.append((start, close.get(enclosing, len(text)) if enclosing >= 0 else top_end))
                continue
        elif tok in _BOX_ARGS:  # "\\scalebox{0.001}{20}", "\\resizebox{0pt}{!}{20}", "\\raisebox{100cm}{20}"
            for _ in range(_BOX_ARGS[tok]):
                after = _BOX_ARG_RE.match(text, after).end()
        body = _SPACES_RE.match(text, after).end()
        if body < len(text) and text[body] == "{":
            spans.append((start, close.get(body, len(text) - 1) + 1))
        else:  # "\\phantom 5": one token
            spans.append((start, _ONE_TOKEN_RE.match(text, body).end()))
    return spans


def _drop(text: str, spans: list[tuple[int, int]]) -> str:
    out, at = [], 0
    for start, end in sorted(spans):
        if start < at:
            continue  # nested in a span already dropped
        kept = " ".join(_KEPT_OPERATOR_RE.findall(_MARKUP_RE.sub("", text[start:end])))
        out.append(text[at:start] + f" {kept} ")
        at = end
    return "".join(out) + text[at:]


_TEX_COMMENT_RE = re.compile(r"(?<![\\\d])(?<!\d )%[^\n]*+")  # "50%" and "50 %" are percent, "\\%" a sign
_COMMENT_ENV_RE = re.compile(r"\\begin\s{0,5}+\{comment\}.*?(?:\\end\s{0,5}+\{comment\}|$)", re.S)
_MD_REFERENCE_RE = re.compile(r"^[ ]{0,3}+\[[^\]\n]{0,200}+\]:[^\n]*+", re.M)  # "[//]: # (20)", "[x]: url "20""
_MD_IMAGE_RE = re.compile(r"!\[[^\]\n]{0,200}+\]\([^)\n]{0,500}+\)")  # alt text shows only when the image fails
_MD_LINK_RE = re.compile(r"\[([^\]\n]{0,200}+)\]\([^)\n]{0,500}+\)")  # "[ ](http://a "20")": only the text shows
_HTML_HIDDEN_ELEMENT_RE = re.compile(
    r"<(script|style|template|noscript|textarea|details|head|title)\b[^<>]{0,300}+>.*?(?:</\1\s{0,5}+>|$)", re.S | re.I)
_HTML_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9]{0,10}+(?=[\s/>])[^<>]{0,300}+>")  # attributes ("title="20"") unread
_HIDDEN_MARKUP = ((_HTML_COMMENT_RE, "<!--"), (_HTML_HIDDEN_RE, "<"), (_HTML_HIDDEN_ELEMENT_RE, "<"),
                  (_IFFALSE_RE, "\\if"), (_TEX_COMMENT_RE, "%"), (_COMMENT_ENV_RE, "comment"),
                  (_MD_IMAGE_RE, "!["))
_UNSHOWN_MARKUP = ((_MD_REFERENCE_RE, "]:", " "), (_MD_LINK_RE, "](", r" \1 "), (_HTML_TAG_RE, "<", " "))
"""Link targets, reference definitions and tags are never part of the math a reader sees, so unlike the
hidden text above, no operator of theirs is kept (a URL's slashes are no divisions)."""
_MACRO_DEF_RE = re.compile(
    r"\\(?:[egx]?def|let|futurelet|(?:re)?newcommand|providecommand|DeclareMathOperator|DeclareRobustCommand"
    r"|(?:re)?newenvironment|colorlet|definecolor|catcode|csname|expandafter|input|include)(?![A-Za-z])")


def defines_macros(text: str) -> bool:
    """True when a response defines or rewires TeX macros ("\\def\\h#1{}", "\\let\\h\\phantom",
    "\\colorlet{c}{white}"): then nothing in it can be read as it renders, so it is not graded at all."""
    return _MACRO_DEF_RE.search(text) is not None
_HIDDEN_COMMANDS = ("phantom", r"\color", r"\textcolor", "box")  # "phantom": \hphantom, \vphantom too


def drop_invisible(text: str) -> str:
    """The text without what renders invisibly (step 3 of the module docstring)."""
    for pattern, marker in _HIDDEN_MARKUP:
        if marker in text:
            text = _drop(text, [m.span() for m in pattern.finditer(text)])
    for pattern, marker, shown in _UNSHOWN_MARKUP:
        if marker in text:
            text = pattern.sub(shown, text)
    if any(c in text for c in _HIDDEN_COMMANDS):
        text = _drop(text, _hidden_spans(text))
    return text


def clean_response(text: str) -> str:
    """The response as it renders, in plain ASCII notation (the module docstring gives the steps)."""
    text = _WHITESPACE_RUN_RE.sub(lambda m: "\n" if "\n" in m.group() else " ", _unicode(text))
    text = drop_invisible(text)
    text = _FENCED_NUMBER_RE.sub(r"\1", text)
    text = _INLINE_CODE_NUMBER_RE.sub(r"\1", text)
    text = _BOLD_RE.sub(r"\2", text)
    text = _BOLD_RE.sub(r"\2", text)  # "***20***" and bold inside italic
    text = _ITALIC_NUMBER_RE.sub(r"\2", text)
    text = _TILDE_APPROX_RE.sub(" approximately ", text)
    text = _THIN_THOUSANDS_RE.sub(lambda m: m.group(1) + re.sub(_THIN_SEP, "", m.group(2)), text)
    text = _SPACING_RE.sub(" ", text)
    for _ in range(3):  # "\text{\texttt{+}}"
        text = _WRAPPED_OPERATOR_RE.sub(r" \1 ", text)
    text = _STYLE_SWITCH_RE.sub("", text)
    text = _DELIMITER_SIZE_RE.sub("", text)
    for _ in range(3):  # "\underline{\mathbf{20}}"
        text = _STYLE_WRAP_RE.sub(r"\1", text)
    return text
