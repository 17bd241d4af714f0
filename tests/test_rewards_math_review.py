"""Rows from the adversarial review of the issue 24 rewrite (echo, hidden content), each scored with the
question it answers, since an echo is judged against the question's operands.

Every row states the expected reward and reason literally. The rules are in the docstrings of
rewards.math_clean (what renders), rewards.math_guards (echo) and rewards.math_verifier (what is not read).
"""

import pytest

from forkrl.rewards.config import MathRewardConfig
from forkrl.rewards.math_verifier import score_math
from forkrl.rewards.types import Sample

CFG = MathRewardConfig(parse_timeout_s=1)
Q017, Q173 = "What is 0 + 17?", "What is 17 + 3?"
U, OK, NONE, MACROS = "unsimplified", "ok", "no_answer", "hidden: defines macros"
IDK = "I cannot determine the answer. "

# (id, question, response, gold, reward, reason)
ECHO = [
    # operators found by their Unicode name, not a hand list
    ("nary_circled_plus", Q017, "0 \u2a01 17", "17", 0.0, U),
    ("squared_plus", Q017, "What is 0 \u229e 17?", "17", 0.0, U),
    ("plus_dot_below", Q017, "0 \u2a25 17", "17", 0.0, U),
    ("plus_circle_above", Q017, "0 \u2a22 17", "17", 0.0, U),
    ("invisible_plus", Q017, "0 \u2064 17", "17", 0.0, U),
    ("invisible_times", "What is 1 * 17?", "1 \u2062 17", "17", 0.0, U),
    ("nary_plus_then_box", Q017, "0 \u2a01 \\boxed{17}", "17", 0.0, U),
    # a dressed operator is still an operator
    ("color_plus", Q017, "0 \\color{red}{+} 17", "17", 0.0, U),
    ("textcolor_plus", Q017, "0 \\textcolor{red}{+} 17", "17", 0.0, U),
    ("backtick_plus", Q017, "0 `+` 17", "17", 0.0, U),
    ("overset_plus", Q017, "0 \\overset{}{+} 17", "17", 0.0, U),
    ("stackrel_plus", Q017, "0 \\stackrel{}{+} 17", "17", 0.0, U),
    ("raisebox_plus", Q017, "0 \\raisebox{0pt}{+} 17", "17", 0.0, U),
    ("low_quote_plus", Q017, "0 \u201a+ 17", "17", 0.0, U),
    # delimiters, struts and markdown between the operator and the operand are gaps
    ("abs_bars", Q017, "0 + | 17 |", "17", 0.0, U),
    ("langle", Q017, "0 + \\langle 17\\rangle", "17", 0.0, U),
    ("lbrace", Q017, "0 + \\lbrace 17\\rbrace", "17", 0.0, U),
    ("lvert", Q017, "0 + \\lvert 17\\rvert", "17", 0.0, U),
    ("strut", Q017, "0 + \\strut 17", "17", 0.0, U),
    ("mathstrut", Q017, "0 + \\mathstrut 17", "17", 0.0, U),
    ("heading", Q017, "0 + \n# 17", "17", 0.0, U),
    # the question's operands listed, no operator: the last is no result
    ("listed_and", Q017, "0 and 17", "17", 0.0, U),
    ("listed_with", Q017, "0 with 17", "17", 0.0, U),
    ("listed_text_and", Q017, "0 \\text{ and } 17", "17", 0.0, U),
    ("listed_comma", Q017, "0, 17", "17", 0.0, U),
    # the second review: a filler phrase, a framed or raised box, a bullet between the operator and the operand
    ("text_the_number", Q017, "0 + \\text{ the number }17", "17", 0.0, U),
    ("text_the_number_newlines", Q017, "\\(0 +\n\n \\text{ the number }17\\)", "17", 0.0, U),
    ("fcolorbox", Q017, "\\(0 \n+\n \\fcolorbox{red}{white}{17}\\)", "17", 0.0, U),
    ("raise_hbox", Q017, "\\(0 +\n\n \\raise1pt\\hbox{17}\\)", "17", 0.0, U),
    ("bullet_after_plus", Q017, "0 +\n- 17", "17", 0.0, U),
    ("bullet_after_and", Q017, "0  and  \n- 17", "17", 0.0, U),
    ("bullet_after_with", Q017, "What is 0  with  \n- 17?", "17", 0.0, U),
    ("star_bullet_after_text_and", Q017, "$0 \\text{ and } \n* 17$", "17", 0.0, U),
    # honest answers around the same words stay paid
    ("the_number_is", Q173, "The answer is the number 20.", "20", 1.0, OK),
    ("bullet_step_then_answer", Q173, "- 17 + 3 = 20\nThe answer is 20.", "20", 1.0, OK),
    ("plus_zero_not_bullet", "What is 17 + 0?", "What is 17 + 0?", "17", 0.0, U),
    ("sum_of_operands_is", Q017, "The sum of 0 and 17 is 17.", "17", 1.0, OK),
    ("result_then_answer", Q173, "17 + 3 = 20. The answer is 20.", "20", 1.0, OK),
    ("result_then_answer_inline", Q173, "First 17 + 3 = 20, then the answer is 20", "20", 1.0, OK),
    ("operands_named_then_result", Q173, "I added 17 and 3 to get 20.", "20", 1.0, OK),
    ("red_answer", Q173, "\\textcolor{red}{20}", "20", 1.0, OK),
]
HIDDEN = [
    # visible text "I cannot determine the answer." and the number where no reader sees it
    ("md_comment", Q173, IDK + "\n[//]: # (20)\n", "20", 0.0, NONE),
    ("md_reference_title", Q173, IDK + '\n[x]: http://a "20"\n', "20", 0.0, NONE),
    ("md_image_alt", Q173, IDK + "![20](a.png)", "20", 0.0, NONE),
    ("md_link_title", Q173, IDK + '[ ](http://a "20")', "20", 0.0, NONE),
    ("html_attribute", Q173, IDK + '<abbr title="20">?</abbr>', "20", 0.0, NONE),
    ("html_img_alt", Q173, IDK + '<img alt="20" src="a.png">', "20", 0.0, NONE),
    ("html_opacity", Q173, IDK + '<span style="opacity:0">20</span>', "20", 0.0, NONE),
    ("html_hidden_attr", Q173, IDK + "<div hidden>20</div>", "20", 0.0, NONE),
    ("html_script", Q173, IDK + "<script>20</script>", "20", 0.0, NONE),
    ("color_black_0", Q173, IDK + "{\\color{black!0}20}", "20", 0.0, NONE),
    ("color_white_100", Q173, IDK + "{\\color{white!100}20}", "20", 0.0, NONE),
    ("rgb_254", Q173, IDK + "\\textcolor[RGB]{254,254,254}{20}", "20", 0.0, NONE),
    ("snow", Q173, IDK + "\\textcolor{snow}{20}", "20", 0.0, NONE),
    ("html_fffffe", Q173, IDK + "\\textcolor[HTML]{FFFFFE}{20}", "20", 0.0, NONE),
    ("gray_0999", Q173, IDK + "\\textcolor[gray]{0.999}{20}", "20", 0.0, NONE),
    ("relax_in_name", Q173, IDK + "\\textcolor{wh\\relax ite}{20}", "20", 0.0, NONE),
    ("scalebox_minus_0", Q173, IDK + "\\scalebox{-0}{20}", "20", 0.0, NONE),
    ("scalebox_tiny", Q173, IDK + "\\scalebox{0.001}{20}", "20", 0.0, NONE),
    ("resizebox_0pt", Q173, IDK + "\\resizebox{0pt}{!}{20}", "20", 0.0, NONE),
    ("raisebox_far", Q173, IDK + "\\raisebox{100cm}{20}", "20", 0.0, NONE),
    ("tex_comment", Q173, IDK + "$% 20\n$", "20", 0.0, NONE),
    ("comment_env", Q173, IDK + "\\begin{comment}20\\end{comment}", "20", 0.0, NONE),
    ("if0", Q173, IDK + "\\if0 1 20\\fi", "20", 0.0, NONE),
    # a response that defines macros cannot be read as it renders
    ("def_swallow", Q173, IDK + "\\def\\h#1{}\\h{\\boxed{20}}", "20", 0.0, MACROS),
    ("newcommand_swallow", Q173, IDK + "\\newcommand{\\h}[1]{}\\h{20}", "20", 0.0, MACROS),
    ("let_phantom", Q173, IDK + "\\let\\h\\phantom\\h{20}", "20", 0.0, MACROS),
    ("colorlet_white", Q173, IDK + "\\colorlet{c}{white}\\textcolor{c}{20}", "20", 0.0, MACROS),
    ("def_white", Q173, IDK + "\\def\\w{white}\\textcolor{\\w}{20}", "20", 0.0, MACROS),
    ("definecolor", Q173, IDK + "\\definecolor{bg}{rgb}{1,1,1}\\textcolor{bg}{20}", "20", 0.0, MACROS),
    # visible forms stay paid: percent is no comment, a plain link shows its text
    ("percent_is_no_comment", "What is 10% of 200?", "10% of 200 is 20.", "20", 1.0, OK),
    ("link_text_shows", Q173, "The answer is [20](http://a).", "20", 1.0, OK),
    ("bold_html", Q173, "The answer is <b>20</b>.", "20", 1.0, OK),
]
H = "hedge"
HEDGE = [
    # two numbers offered, the last graded (gold 21) or the first (gold 20)
    ("vs", Q173, "20 vs 21", "21", 0.0, H),
    ("and_or", Q173, "20 and/or 21", "21", 0.0, H),
    ("lor", Q173, "20 \\lor 21", "21", 0.0, H),
    ("text_or", Q173, "20 \\text{or} 21", "21", 0.0, H),
    ("either_vee", Q173, "Either 20 \u2228 21", "21", 0.0, H),
    ("to", Q173, "20 to 21", "21", 0.0, H),
    ("from_to", Q173, "from 20 to 21", "21", 0.0, H),
    ("through", Q173, "Answer: 20 through 21", "21", 0.0, H),
    ("interval", Q173, "[20, 21]", "21", 0.0, H),
    ("le_x_le", Q173, "20 \u2264 x \u2264 21", "21", 0.0, H),
    ("em_dash_spaced", Q173, "20 \u2014 21", "21", 0.0, H),
    ("comma", Q173, "20, 21", "21", 0.0, H),
    ("semicolon", Q173, "20; 21", "21", 0.0, H),
    ("alternatively", Q173, "20 alternatively 21", "21", 0.0, H),
    ("otherwise", Q173, "20 otherwise 21", "21", 0.0, H),
    ("perhaps", Q173, "20 perhaps 21", "21", 0.0, H),
    ("but_could_be", Q173, "20 but could be 21", "21", 0.0, H),
    ("or_even", Q173, "20 or even 21", "21", 0.0, H),
    ("nor", Q173, "20 nor 21", "21", 0.0, H),
    ("dollar_or", Q173, "20 $or$ 21", "21", 0.0, H),
    ("quad_text_or", Q173, "20 \\quad\\text{or}\\quad 21", "21", 0.0, H),
    ("big_vee", Q173, "20 \u22c1 21", "21", 0.0, H),
    ("double_bar", Q173, "20 \u2016 21", "21", 0.0, H),
    ("xor", Q173, "20 \u22bb 21", "21", 0.0, H),
    ("zero_r", Q173, "20 0r 21", "21", 0.0, H),
    ("o_r", Q173, "20 o r 21", "21", 0.0, H),
    ("ou", Q173, "20 ou 21", "21", 0.0, H),
    ("oder", Q173, "20 oder 21", "21", 0.0, H),
    ("chinese_or", Q173, "20 \u6216 21", "21", 0.0, H),
    ("russian_or", Q173, "20 \u0438\u043b\u0438 21", "21", 0.0, H),
    ("and_two", Q173, "20 and 21", "21", 0.0, H),
    ("em_dash_first", Q173, "20\u201421", "20", 0.0, H),
    ("approx_first", Q173, "20\u224821", "20", 0.0, H),
    ("question_mark_first", Q173, "20?21", "20", 0.0, H),
    ("if_not_first", Q173, "20 if not 21", "20", 0.0, H),
    # two numbers side by side in one box read as one ("2021") without this
    ("box_newline", Q173, "\\boxed{20\n21}", "21", 0.0, H),
    ("box_dollar", Q173, "\\boxed{20 $ 21}", "21", 0.0, H),
    ("box_space", Q173, "\\boxed{0 1}", "1", 0.0, H),
    # negated, bounded, approximate
    ("anything_but", Q173, "The answer is anything but 20.", "20", 0.0, H),
    ("except", Q173, "The answer is except 20.", "20", 0.0, H),
    ("over", Q173, "The answer is over 20.", "20", 0.0, H),
    ("beyond", Q173, "The answer is beyond 20.", "20", 0.0, H),
    ("exceeding", Q173, "The answer is exceeding 20.", "20", 0.0, H),
    ("up_to", Q173, "The answer is up to 20.", "20", 0.0, H),
    ("at_most_after", Q173, "The answer is 20 at most.", "20", 0.0, H),
    ("box_at_most", Q173, "\\boxed{20 at most}", "20", 0.0, H),
    ("box_max", Q173, "\\boxed{20 max}", "20", 0.0, H),
    ("and_under", Q173, "The answer is 20 and under.", "20", 0.0, H),
    ("within_of", Q173, "The answer is within 1 of 20.", "20", 0.0, H),
    ("plus_or_minus", Q173, "The answer is plus or minus 20.", "20", 0.0, H),
    ("approximately", Q173, "The answer is approximately 20.", "20", 0.0, H),
    ("about", Q173, "The answer is about 20.", "20", 0.0, H),
    ("roughly", Q173, "The answer is roughly 20.", "20", 0.0, H),
    ("close_to", Q173, "The answer is close to 20.", "20", 0.0, H),
    ("thereabouts", Q173, "The answer is 20 or thereabouts.", "20", 0.0, H),
    ("dash_ish", Q173, "The answer is 20-ish.", "20", 0.0, H),
    ("approx_paren", Q173, "The answer is 20 (approx.).", "20", 0.0, H),
    ("box_ish_zero", "What is 5 - 5?", "\\boxed{0ish}", "0", 0.0, H),
    ("box_at_most_zero", "What is 5 - 5?", "\\boxed{0 at most}", "0", 0.0, H),
    ("lesssim", Q173, "\\lesssim 20", "20", 0.0, H),
    # "~" before a number where an answer is committed is "approximately", elsewhere TeX's non-breaking space
    ("tilde_after_colon", Q173, "Answer: ~20", "20", 0.0, H),
    ("tilde_after_is", Q173, "The answer is ~20.", "20", 0.0, H),
    ("tilde_glued_after_is", Q173, "The answer is~20.", "20", 0.0, H),
    ("tilde_line_start", Q173, "~20", "20", 0.0, H),
    ("tilde_paren", Q173, "The answer is (~20).", "20", 0.0, H),
    ("tilde_spacing_in_box", Q173, "\\boxed{~20}", "20", 1.0, OK),  # TeX renders a space there
    ("tilde_spacing_equals", Q173, "$x~=~20$", "20", 1.0, OK),
    ("tilde_spacing_after_equals", Q173, "$17 + 3 =~20$", "20", 1.0, OK),
    ("tilde_spacing_words", Q173, "The sum~of 17 and~3 is 20.", "20", 1.0, OK),
    # chain-of-thought with intermediate results stays paid
    ("cot_restated", Q173, "17 + 3 = 20. The answer is 20.", "20", 1.0, OK),
    ("cot_restated_with_comma", Q173, "17 + 3 = 20, so 20.", "20", 1.0, OK),
    ("cot_then", Q173, "First 17 + 3 = 20, then the answer is 20", "20", 1.0, OK),
    ("restated_fraction", "What is 1/2?", "The answer is 1/2, or 0.5.", "0.5", 1.0, OK),
]
ROWS = ECHO + HIDDEN + HEDGE


def test_row_ids_are_unique():
    assert len({r[0] for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("question,response,gold,reward,reason", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_review_row(question, response, gold, reward, reason):
    s = score_math(Sample("u", question, response, gold), CFG)
    assert (s.reward, s.reason) == (reward, reason)
    assert s.correct == (reward == 1.0)
