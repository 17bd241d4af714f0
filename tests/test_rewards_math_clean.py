"""rewards.math_clean: what a response renders as, written out by hand for each rewrite."""

import pytest

from forkrl.rewards.math_clean import clean_response

CLEAN = [
    # Unicode: NFKC, format characters, other digit systems, operator look-alikes, superscripts
    ("0 \ufe62 17", "0 + 17"), ("0 \u2295 17", "0 + 17"), ("0 \u200b+ 17", "0 + 17"), ("2\u00ad0", "20"),
    ("2\u200d0", "20"), ("\ufeff20", "20"), ("\u0662\u0660", "20"), ("\u0968\u0966", "20"),
    ("\U0001d7d0\U0001d7ce", "20"), ("\uff12\uff10", "20"), ("5 \u2212 3", "5 - 3"), ("3\u00b2", "3^{2}"),
    ("x\u2081", "x_{1}"), ("10\u207b\u00b3", "10^{-3}"), ("0 \u207a 17", "0 + 17"), ("\u00bd", "1/2"),
    # invisible content goes, operators inside it stay
    ("\\phantom{\\boxed{20}}19", "  19"), ("\\hphantom 2 19", "   19"), ("\\vphantom{2}19", "  19"),
    ("\\textcolor{white}{20} 19", "   19"), ("\\textcolor{WHITE}{20} 19", "   19"),
    ("\\textcolor[HTML]{FFFFFF}{20} 19", "   19"), ("\\textcolor[gray]{1}{20} 19", "   19"),
    ("\\textcolor{red}{20}", "\\textcolor{red}{20}"), ("{\\color{white} 20} 19", "{  } 19"),
    ("\\color{white} 20\n19", "  \n19"), ("0 \\textcolor{white}{+} 17", "0  +  17"),
    ("<!-- 20 --> 19", "   19"), ("\\iffalse 20 \\fi 19", "   19"), ("\\scalebox{0}{20} 19", "   19"),
    ("\\scalebox{2}{20}", "  "), ("\\phantom{", "  "),  # every scalebox hides: any size can be a disguise
    # adversarial review of the rewrite: operators by Unicode name, invisible operators, whitespace runs
    ("0 \u2a01 17", "0 + 17"), ("0 \u229e 17", "0 + 17"), ("0 \u2a25 17", "0 + 17"), ("0 \u2a22 17", "0 + 17"),
    ("0 \u2064 17", "0 + 17"), ("0\u206417", "0 + 17"), ("3 \u2062 4", "3 \\times 4"), ("5 \u229f 3", "5 - 3"),
    ("\u00b13", "\\pm 3"), ("not" + " " * 50 + "20", "not 20"), ("a \n\n  b", "a\nb"),
    # hiding: colours other than plain dark names, boxes of any size, comments, markdown and HTML dress
    ("{\\color{black!0}20} 19", "{  } 19"), ("\\textcolor[RGB]{254,254,254}{20} 19", "   19"),
    ("\\textcolor{snow}{20} 19", "   19"), ("\\textcolor{wh\\relax ite}{20} 19", "   19"),
    ("\\textcolor{blue}{20}", "\\textcolor{blue}{20}"), ("\\scalebox{0.001}{20} 19", "   19"),
    ("\\resizebox{0pt}{!}{20} 19", "   19"), ("\\raisebox{100cm}{20} 19", "   19"), ("0 \\raisebox{0pt}{+} 17", "0  +  17"),
    ("$% 20\n$", "$  \n$"), ("50% of 40", "50% of 40"), ("50 \\% 2", "50 \\% 2"),
    ("\\begin{comment}20\\end{comment} 19", "   19"), ("\\if0 1 20\\fi 19", "   19"),
    ("x\n[//]: # (20)\n", "x\n \n"), ("![20](a.png) 19", "   19"), ("[ ](http://a \"20\") 19", "    19"), ("[20](http://a)", " 20 "),
    ('<abbr title="20">?</abbr>', " ? "), ('<span style="opacity:0">20</span> 19', "   19"),
    ("<script>20</script> 19", "   19"), ("<b>20</b>", " 20 "),
    # markdown and code
    ("**20**", "20"), ("17 + 3 = **20**", "17 + 3 = 20"), ("2**3", "2**3"), ("*20*", "20"), ("3*4*5", "3*4*5"),
    ("`20`", "20"), ("```\n20\n```", "20"), ("```python\nprint(5)\n```", "```python\nprint(5)\n```"),
    # TeX spacing, wrapped operators, style
    ("0 \\enspace+ 17", "0  + 17"), ("0 \\hspace{1em}+ 17", "0  + 17"), ("0 \\hspace*{2pt}+ 17", "0  + 17"),
    ("0 &+& 17", "0  +  17"), ("1\\,000", "1000"), ("0 \\text{+} 17", "0  +  17"),
    ("0 \\mathbin{\\times} 17", "0  \\times  17"), ("\\displaystyle 20", "20"), ("\\left(20\\right)", "(20)"),
    ("\\left.x\\right|", "x|"), ("{\\bf 20}", "{20}"), ("\\underline{\\mathbf{20}}", "20"),
    ("\\boxed{20\\;}", "\\boxed{20 }"), ("\\& 5", "\\& 5"),
]


@pytest.mark.parametrize("text,want", CLEAN)
def test_clean_response(text, want):
    assert clean_response(text) == want


def test_flood_of_unclosed_phantoms_is_linear():
    """One brace scan for the whole text: 30k unclosed \\phantom{ must not cost 30k scans."""
    import time

    t0 = time.monotonic()
    assert clean_response("\\phantom{" * 30_000).strip() == ""
    assert time.monotonic() - t0 < 5
