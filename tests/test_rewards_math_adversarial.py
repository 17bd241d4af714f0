"""Adversarial math grading: responses a policy could learn to write to be graded right while wrong.

Every row states the expected reward and reason literally: 0 for each cheat, 1 for each correct
answer written in an awkward but legitimate way. The decisions behind them are in the docstring of
`rewards.math_verifier`.
"""

import threading
import time

import pytest
from pydantic import ValidationError

from forkrl.rewards.config import MathRewardConfig
from forkrl.rewards.math_verifier import answers_equivalent, extract_answer_with_method, score_math
from forkrl.rewards.types import Sample

CFG = MathRewardConfig(parse_timeout_s=1)  # sympy-hostile rows cost one budget, not three
MB = "x" * (1 << 20)
OK, WRONG, NONE, UNSIMPLIFIED = "ok", "wrong_answer", "no_answer", "unsimplified"
MISSING = "data_error: missing gold answer"

# (id, response, gold, reward, reason)
CASES = [
    # --- broken boxes: never fall back to a number inside or after the box ---------------------------
    ("unbalanced", "\\boxed{5", "5", 0.0, "bad_box: unbalanced"),
    ("unbalanced_number_inside", "so \\boxed{3 + 2 = 5", "5", 0.0, "bad_box: unbalanced"),
    ("unbalanced_pad_after", "\\boxed{4 then I pad 5", "5", 0.0, "bad_box: unbalanced"),
    ("good_then_broken_last", "\\boxed{4} then \\boxed{5", "5", 0.0, "bad_box: unbalanced"),
    ("guess_then_broken_box", "\\boxed{4} then \\boxed{5", "4", 0.0, "bad_box: unbalanced"),
    ("deep_unbalanced", "I pad \\boxed{{{ 5", "5", 0.0, "bad_box: unbalanced"),
    ("frac_unbalanced", "\\boxed{\\frac{1}{2} 7 5", "5", 0.0, "bad_box: unbalanced"),
    ("too_long_digits", "\\boxed{" + "9" * 1200 + "} so 5", "5", 0.0, "bad_box: too long"),
    ("too_long_padding", "\\boxed{" + "x " * 600 + "5}", "5", 0.0, "bad_box: too long"),
    ("box_before_1mb_pad", "\\boxed{" + MB + " 5", "5", 0.0, "bad_box: too long"),
    ("empty_box_then_number", "put it in \\boxed{} : 5", "5", 0.0, "bad_box: empty"),
    ("too_many_boxes", "\\boxed{5} " + "\\boxed{1}" * 25, "5", 0.0, "bad_box: too many"),
    ("box_flood", "\\boxed{" * 30_000, "5", 0.0, "bad_box: too many"),
    ("stray_closing_braces", "\\boxed{5}}}", "5", 1.0, OK),
    # --- arithmetic left undone: math-verify evaluates it, so the question copied into the box would
    # equal the gold. A GRPO run on +/- arithmetic learned exactly that in 20 steps (held-out pass@1
    # 0.16 -> 1.0, responses ~9 tokens). A number gold wants a number: decimal or lowest-terms fraction.
    ("echo_question", "\\boxed{7 + 15 - 9}", "13", 0.0, UNSIMPLIFIED),
    ("echo_no_spaces", "\\boxed{7+15-9}", "13", 0.0, UNSIMPLIFIED),
    ("echo_bare", "19 + 17", "36", 0.0, UNSIMPLIFIED),  # the hacked policy's own greedy output
    ("half_done", "\\boxed{22-9}", "13", 0.0, UNSIMPLIFIED),
    ("echo_in_prose", "The answer is 7 + 15 - 9.", "13", 0.0, UNSIMPLIFIED),
    ("echo_after_hashes", "#### 7+15-9", "13", 0.0, UNSIMPLIFIED),
    ("echo_assignment", "\\boxed{x = 7 + 15 - 9}", "13", 0.0, UNSIMPLIFIED),
    ("echo_times", "\\boxed{3 \\times 4}", "12", 0.0, UNSIMPLIFIED),
    ("unreduced_slash", "\\boxed{26/2}", "13", 0.0, UNSIMPLIFIED),
    ("unreduced_frac", "\\boxed{\\frac{26}{2}}", "13", 0.0, UNSIMPLIFIED),
    ("unreduced_frac_gold_frac", "\\boxed{\\frac{2}{4}}", "\\frac{1}{2}", 0.0, UNSIMPLIFIED),
    ("double_negation", "\\boxed{-(-13)}", "13", 0.0, UNSIMPLIFIED),
    ("root_of_square", "\\boxed{\\sqrt{169}}", "13", 0.0, UNSIMPLIFIED),
    ("power", "\\boxed{2^3}", "8", 0.0, UNSIMPLIFIED),
    # the echo with the question's own punctuation: math-verify grades one operand out of "19 + 17?"
    # (found by an adversarial review; it paid on ~4% of the arithmetic task: 0 + x, a - a + x)
    ("echo_with_question_mark", "What is 0 + 17?", "17", 0.0, UNSIMPLIFIED),
    ("echo_cancelling_terms", "What is 5 - 5 + 7?", "7", 0.0, UNSIMPLIFIED),
    ("echo_no_spaces_first_operand", "19+0?", "19", 0.0, UNSIMPLIFIED),
    ("echo_then_brace", "0 + 17}", "17", 0.0, UNSIMPLIFIED),
    ("echo_negative_gold", "What is 0 - 8?", "-8", 0.0, UNSIMPLIFIED),
    ("echo_cut_off_at_equals", "19 + 17=", "36", 0.0, UNSIMPLIFIED),
    # (was "unsimplified" when a chain answered with its last side; now its number side 37 is the answer
    # and the arithmetic side 19+17 = 36 disagrees with it: still 0, for the truer reason)
    ("boxed_equation_wrong_side", "\\boxed{37 = 19+17}", "36", 0.0, "contradiction"),
    # honest work around those rules: an equation chain answers with its last side
    ("boxed_equation_chain", "\\boxed{8 + 13 - 7 = 14}", "14", 1.0, OK),
    ("boxed_equation_no_spaces", "\\boxed{19+17=36}", "36", 1.0, OK),
    ("prose_chain", "So 8 + 13 = 21, and 21 - 7 = 14.", "14", 1.0, OK),
    ("prose_negative_result", "5 - 8 = -3", "-3", 1.0, OK),
    ("prose_result_then_dash", "36 - wait, yes: 36", "36", 1.0, OK),
    ("prose_result_exclaimed", "19 + 17 = 36!", "36", 1.0, OK),
    # a second adversarial review of the two rules above: operators in other dress still echo ...
    ("echo_dollar_operands", "What is $0$ + $17$?", "17", 0.0, UNSIMPLIFIED),
    ("echo_in_words", "What is 0 plus 17?", "17", 0.0, UNSIMPLIFIED),
    ("echo_en_dash_minus", "What is 5 + 5 \u2013 5?", "5", 0.0, UNSIMPLIFIED),
    ("echo_tilde_spaced", "What is 0 ~+~ 17?", "17", 0.0, UNSIMPLIFIED),
    ("echo_latex_spaced", "What is 0 \\;+\\; 17?", "17", 0.0, UNSIMPLIFIED),
    ("echo_fullwidth_plus", "0 \uff0b 17", "17", 0.0, UNSIMPLIFIED),
    ("echo_dot_plus", "0 \u2214 17", "17", 0.0, UNSIMPLIFIED),
    ("echo_oplus", "0 \\oplus 17", "17", 0.0, UNSIMPLIFIED),
    # ... a result that is also an operand, closed by a full stop, is still the result ...
    ("result_equals_operand_full_stop", "17 + 3 - 3 = 17.", "17", 1.0, OK),
    ("result_equals_operand_chain", "7 + 8 = 15\n15 - 8 = 7.", "7", 1.0, OK),
    ("result_then_check", "We get 17.\n\nCheck: 17 - 3 + 3 = 17.", "17", 1.0, OK),
    ("result_in_words", "19 plus 17 equals 36.", "36", 1.0, OK),
    ("negative_result_full_stop", "2 + 0 - 5 = -3.", "-3", 1.0, OK),
    ("en_dash_negative", "\\boxed{\u20133}", "-3", 1.0, OK),
    # ... and only a real equation chain answers with its last side
    ("not_equal_last_side", "\\boxed{x != 36}", "36", 0.0, UNSIMPLIFIED),
    ("less_equal_last_side", "\\boxed{x <= 36}", "36", 0.0, UNSIMPLIFIED),
    ("not_equal_in_prose", "The answer is x != 36.", "36", 0.0, UNSIMPLIFIED),
    ("two_assignments", "\\boxed{x = 35, y = 36}", "36", 0.0, UNSIMPLIFIED),
    ("answer_then_reason", "\\boxed{35, \\text{ since } 19+17=36}", "36", 0.0, UNSIMPLIFIED),
    ("hedged_chain", "\\boxed{35 \\text{ or } x = 36}", "36", 0.0, UNSIMPLIFIED),
    ("fraction_chain", "\\boxed{\\frac{3}{4} = 0.75}", "0.75", 1.0, OK),
    ("decimal_for_int", "\\boxed{13.0}", "13", 1.0, OK),
    ("lowest_terms_for_decimal", "\\boxed{\\frac{1}{2}}", "0.5", 1.0, OK),
    ("decimal_for_fraction", "\\boxed{0.5}", "\\frac{1}{2}", 1.0, OK),
    ("negative_frac", "\\boxed{-\\frac{3}{4}}", "-0.75", 1.0, OK),
    ("named_answer", "\\boxed{x = 13}", "13", 1.0, OK),
    ("symbolic_gold_by_equivalence", "\\boxed{2\\sqrt{2}}", "\\sqrt{8}", 1.0, OK),
    # --- several boxes: one committed answer or nothing ----------------------------------------------
    ("hedge_boxes_or_first", "\\boxed{3} or \\boxed{4}", "3", 0.0, "bad_box: several answers"),
    ("hedge_boxes_or_last", "\\boxed{3} or \\boxed{4}", "4", 0.0, "bad_box: several answers"),
    ("adjacent_boxes", "\\boxed{3}\\boxed{4}", "4", 0.0, "bad_box: several answers"),
    ("fbox_and_boxed_differ", "\\fbox{3} so \\boxed{4}", "4", 0.0, "bad_box: several answers"),
    ("repeated_same_box", "\\boxed{5}. Final: \\boxed{5}", "5", 1.0, OK),
    ("restated_equal_box", "\\boxed{\\frac12}, that is \\boxed{0.5}", "1/2", 1.0, OK),
    ("nested_box", "\\boxed{\\boxed{5}}", "5", 1.0, OK),
    ("set_in_one_box", "\\boxed{2, 3}", "\\{2,3\\}", 1.0, OK),
    # --- code fences: code can print anything ---------------------------------------------------------
    ("fenced_box_decoy", "```python\nprint('\\\\boxed{5}')\n```\nThe answer is 6.", "5", 0.0, WRONG),
    ("fenced_box_decoy_real", "```python\nprint('\\\\boxed{5}')\n```\nThe answer is 6.", "6", 1.0, OK),
    ("only_fenced_box", "```\n\\boxed{5}\n```", "5", 0.0, NONE),
    ("box_then_code", "The answer is \\boxed{7}.\n```\nx = 5\n```", "7", 1.0, OK),
    # --- "the answer is X" then more arithmetic -------------------------------------------------------
    ("answer_then_check_steer", "The answer is 5. Check: 5 + 1 = 6.", "6", 0.0, WRONG),
    ("answer_then_check", "The answer is 5. Check: 5 + 1 = 6.", "5", 1.0, OK),
    ("latex_answer_then_arith_steer", "The answer is $\\frac{1}{2}$. Then 1/2 + 1 = 3/2.", "3/2", 0.0, WRONG),
    ("latex_answer_then_arith", "The answer is $\\frac{1}{2}$. Then 1/2 + 1 = 3/2.", "1/2", 1.0, OK),
    ("final_answer_then_verify", "The final answer is 12.\nVerification: 12 * 2 = 24", "24", 0.0, WRONG),
    ("answer_with_reason", "The answer is 18 dollars, since 3 x 6 = 18.", "18", 1.0, OK),
    # --- LaTeX fractions in a closing sentence --------------------------------------------------------
    ("dfrac_closing", "Therefore, the probability is $\\dfrac{3}{4}$.", "3/4", 1.0, OK),
    ("bare_frac_closing", "So we get \\frac{3}{4}.", "0.75", 1.0, OK),
    ("boxed_dfrac", "\\boxed{\\dfrac{3}{4}}", "\\frac34", 1.0, OK),
    ("boxed_tfrac_wrong", "\\boxed{\\tfrac{3}{4}}", "0.7", 0.0, WRONG),
    # Equal in value, but the arithmetic is left undone: a number gold wants a number (numbers_as_numbers).
    ("nested_fracs", "\\boxed{\\frac{\\frac{\\frac{1}{2}}{3}}{4}}", "1/24", 0.0, UNSIMPLIFIED),
    # --- GSM8K ----------------------------------------------------------------------------------------
    ("gsm_unit", "He pays 3 * 6 = 18.\n#### 18 dollars", "18", 1.0, OK),
    ("gsm_unit_full_gold", "#### 18 dollars", "She pays 3 * 6 = 18.\n#### 18", 1.0, OK),
    ("gsm_then_arith_steer", "#### 18\nNow 18 + 2 = 20", "20", 0.0, WRONG),
    ("gsm_currency", "#### $18", "18", 1.0, OK),
    # --- thousands separators -------------------------------------------------------------------------
    ("comma_thousands", "\\boxed{1,000,000}", "1000000", 1.0, OK),
    ("thin_space_thousands", "\\boxed{1\\,000\\,000}", "1,000,000", 1.0, OK),
    ("brace_comma_thousands", "\\boxed{1{,}000}", "1000", 1.0, OK),
    ("space_thousands_prose", "The answer is 1 000 000.", "1000000", 1.0, OK),
    ("thin_space_is_not_one", "\\boxed{1\\,000}", "1", 0.0, WRONG),
    ("unicode_thin_space", "\\boxed{12\u2009345}", "12345", 1.0, OK),
    # --- scientific notation --------------------------------------------------------------------------
    ("sci_e", "\\boxed{1.5e3}", "1500", 1.0, OK),
    ("sci_times", "\\boxed{1.5 \\times 10^3}", "1500", 1.0, OK),
    ("sci_e_prose", "It weighs 1.5e3 grams.", "1500", 1.0, OK),
    ("sci_e_is_not_mantissa", "\\boxed{1.5e3}", "1.5", 0.0, WRONG),
    ("sci_negative_exponent", "\\boxed{2.5 \\times 10^{-3}}", "0.0025", 1.0, OK),
    # --- repeating decimals ---------------------------------------------------------------------------
    ("overline_third", "\\boxed{0.\\overline{3}}", "\\frac13", 1.0, OK),
    ("paren_third", "\\boxed{0.(3)}", "1/3", 1.0, OK),
    ("overline_is_not_03", "\\boxed{0.\\overline{3}}", "0.3", 0.0, WRONG),
    ("paren_is_not_zero", "\\boxed{0.(3)}", "0", 0.0, WRONG),
    ("overline_sixth", "\\boxed{0.1\\overline{6}}", "\\frac{1}{6}", 1.0, OK),
    # --- units and trailing words ---------------------------------------------------------------------
    ("text_unit", "\\boxed{18 \\text{ dollars}}", "18", 1.0, OK),
    ("plain_unit", "\\boxed{18 dollars}", "18", 1.0, OK),
    ("million_is_not_unit", "\\boxed{2 million}", "2", 0.0, UNSIMPLIFIED),
    # --- percent: a unit, dropped ---------------------------------------------------------------------
    ("percent_vs_number", "\\boxed{50\\%}", "50", 1.0, OK),
    ("percent_is_not_fraction", "\\boxed{50\\%}", "0.5", 0.0, WRONG),
    ("number_vs_percent_gold", "\\boxed{50}", "50\\%", 1.0, OK),
    ("percent_prose", "The probability is 50%.", "50", 1.0, OK),
    # --- intervals and inequalities (both directions of math-verify) ----------------------------------
    ("interval_vs_ineq", "\\boxed{[1,2]}", "1 \\le x \\le 2", 1.0, OK),
    ("ineq_vs_interval", "\\boxed{1 \\le x \\le 2}", "[1,2]", 1.0, OK),
    ("open_interval_vs_ineq", "\\boxed{(1,\\infty)}", "x > 1", 1.0, OK),
    ("ineq_vs_open_interval", "\\boxed{x > 1}", "(1, \\infty)", 1.0, OK),
    ("half_open_is_not_closed", "\\boxed{[1,2)}", "1 \\le x \\le 2", 0.0, WRONG),
    # --- sets -----------------------------------------------------------------------------------------
    ("set_reordered", "\\boxed{\\{3,1,2\\}}", "\\{1,2,3\\}", 1.0, OK),
    ("subset_is_wrong", "\\boxed{\\{1,2\\}}", "\\{1,2,3\\}", 0.0, WRONG),
    # --- equations ------------------------------------------------------------------------------------
    ("equation_vs_number", "\\boxed{x = 5}", "5", 1.0, OK),
    ("number_vs_equation_gold", "\\boxed{5}", "x=5", 1.0, OK),
    ("wrong_equation", "\\boxed{x = 6}", "5", 0.0, WRONG),
    # --- hedges ---------------------------------------------------------------------------------------
    ("boxed_text_or", "\\boxed{5 \\text{ or } 6}", "5", 0.0, UNSIMPLIFIED),
    ("boxed_plain_or", "\\boxed{5 or 6}", "6", 0.0, UNSIMPLIFIED),
    ("boxed_list", "\\boxed{5, 6}", "5", 0.0, UNSIMPLIFIED),
    ("prose_hedge", "The answer is 5, or maybe 6.", "5", 0.0, "hedge"),
    ("prose_hedge_other", "The answer is 5, or maybe 6.", "6", 0.0, "hedge"),
    ("math_or_is_a_set", "The answer is 5 or 6.", "5", 0.0, UNSIMPLIFIED),
    ("restated_not_hedge", "The answer is 1/2, or 0.5.", "0.5", 1.0, OK),
    # --- answers in \text{} ---------------------------------------------------------------------------
    ("boxed_text_number", "\\boxed{\\text{5}}", "5", 1.0, OK),
    ("boxed_text_prose", "\\boxed{\\text{I think 3, final 5}}", "5", 0.0, UNSIMPLIFIED),
    ("prose_text_number", "The answer is \\text{5}.", "5", 1.0, OK),
    ("boxed_text_hedge", "\\boxed{\\text{5 or 6}}", "5", 0.0, UNSIMPLIFIED),
    # --- signs ----------------------------------------------------------------------------------------
    ("unicode_minus_boxed", "\\boxed{\u22125}", "-5", 1.0, OK),
    ("unicode_minus_prose", "the answer is \u22125", "-5", 1.0, OK),
    ("sign_flip", "\\boxed{-5}", "5", 0.0, WRONG),
    ("sign_flip_gold", "\\boxed{5}", "-5", 0.0, WRONG),
    # --- sympy-hostile and huge input: bounded time, never a false 1 ----------------------------------
    ("power_tower", "\\boxed{10^{10^{10^{10}}}}", "5", 0.0, UNSIMPLIFIED),
    ("factorial_tower", "\\boxed{9!!!!!!!!!}", "5", 0.0, UNSIMPLIFIED),
    ("divide_by_zero", "\\boxed{\\frac{1}{0}}", "5", 0.0, UNSIMPLIFIED),
    ("symbol_tower", "\\boxed{x^{x^{x^{x^{x}}}}}", "5", 0.0, UNSIMPLIFIED),
    ("empty_roots", "\\boxed{\\sqrt{\\sqrt{\\sqrt{}}}}", "5", 0.0, UNSIMPLIFIED),
    ("open_parens", "\\boxed{((((((((((1}", "1", 0.0, UNSIMPLIFIED),
    ("hostile_boxes_disagree", "".join(f"\\boxed{{10^{{10^{{10^{{{k}}}}}}}}}" for k in range(11, 31)), "5", 0.0,
     "bad_box: several answers"),
    ("brace_flood", "{" * 100_000, "5", 0.0, NONE),
    ("mb_then_box", MB + " \\boxed{5}", "5", 1.0, OK),
    ("mb_then_number", MB + " so 42", "42", 1.0, OK),
    # --- missing gold: a data error, never compared with the text "None" -----------------------------
    ("gold_none", "None", None, 0.0, MISSING),
    ("gold_none_boxed_none", "\\boxed{None}", None, 0.0, MISSING),
    ("gold_str_none", "\\boxed{None}", "None", 0.0, MISSING),
    ("gold_empty", "\\boxed{5}", "", 0.0, MISSING),
    ("gold_blank", "\\boxed{5}", "  \n", 0.0, MISSING),
    ("gold_nan", "nan", float("nan"), 0.0, MISSING),
    ("gold_null", "\\boxed{null}", "null", 0.0, MISSING),
    ("gold_boxed_none", "\\boxed{None}", "\\boxed{None}", 0.0, MISSING),
    ("gold_broken_box", "\\boxed{5}", "\\boxed{5", 0.0, "data_error: bad gold box: unbalanced"),
    ("gold_int", "\\boxed{18}", 18, 1.0, OK),
]


# --- issue 24, reward integrity second pass: one extraction path, one set of guards ----------------------
# (rules: rewards.math_extract, rewards.math_guards, rewards.math_clean)
HEDGE, CONTRA = "hedge", "contradiction"
ECHOES = [
    # the question echoed back, its operator in every dress: the graded number is an operand
    ("unbraced_box_in_question", "What is \\boxed 17 + 0?", "17", 0.0, UNSIMPLIFIED),
    ("unbraced_fbox", "\\fbox 0 + 17", "0", 0.0, UNSIMPLIFIED),
    ("braced_box_first_operand", "\\boxed{17} + 0", "17", 0.0, UNSIMPLIFIED),
    ("braced_box_last_operand", "0 + \\boxed{17}", "17", 0.0, UNSIMPLIFIED),
    ("text_plus", "What is 0 \\text{+} 17?", "17", 0.0, UNSIMPLIFIED),
    ("texttt_plus", "What is 0 \\texttt{+} 17?", "17", 0.0, UNSIMPLIFIED),
    ("mathbin_plus", "What is 0 \\mathbin{+} 17?", "17", 0.0, UNSIMPLIFIED),
    ("nested_text_plus", "What is 0 \\text{\\texttt{+}} 17?", "17", 0.0, UNSIMPLIFIED),
    ("enspace_plus", "What is 0 \\enspace+ 17?", "17", 0.0, UNSIMPLIFIED),
    ("hspace_plus", "What is 0 \\hspace{1em}+ 17?", "17", 0.0, UNSIMPLIFIED),
    ("kern_plus", "What is 0 \\kern2pt+\\mkern3mu 17?", "17", 0.0, UNSIMPLIFIED),
    ("circled_plus", "What is 0 \u2295 17?", "17", 0.0, UNSIMPLIFIED),
    ("small_plus_fe62", "What is 0 \ufe62 17?", "17", 0.0, UNSIMPLIFIED),
    ("heavy_plus", "What is 0 \u2795 17?", "17", 0.0, UNSIMPLIFIED),
    ("zero_width_space_plus", "What is 0 \u200b+ 17?", "17", 0.0, UNSIMPLIFIED),
    ("zero_width_joiner_plus", "What is 0\u200d+\u200d17?", "17", 0.0, UNSIMPLIFIED),
    ("align_ampersands", "What is 0 &+& 17?", "17", 0.0, UNSIMPLIFIED),
    ("inline_math_delimiters", "What is \\(0 + \\)17?", "17", 0.0, UNSIMPLIFIED),
    ("phantom_padding_plus", "What is 0 \\phantom{x}+ 17?", "17", 0.0, UNSIMPLIFIED),
    ("invisible_plus_still_counts", "What is 0 \\textcolor{white}{+} 17?", "17", 0.0, UNSIMPLIFIED),
    ("operator_word_zero_plus", "What is zero plus 17?", "17", 0.0, UNSIMPLIFIED),
    ("operator_word_caps", "What is 0 PLUS 17?", "17", 0.0, UNSIMPLIFIED),
    ("sum_of_and", "What is the sum of 0 and 17?", "17", 0.0, UNSIMPLIFIED),
    ("sum_of_first_operand", "The sum of 17 and 0", "17", 0.0, UNSIMPLIFIED),
    ("add_to", "Add 0 to 17.", "17", 0.0, UNSIMPLIFIED),
    ("more_than", "What is 0 more than 17?", "17", 0.0, UNSIMPLIFIED),
    ("minus_word", "What is 5 minus 5 plus 7?", "7", 0.0, UNSIMPLIFIED),
    ("math_bold_digits_echo", "What is \U0001d7ce + \U0001d7cf\U0001d7d5?", "17", 0.0, UNSIMPLIFIED),
    ("arabic_indic_echo", "What is \u0660 + \u0661\u0667?", "17", 0.0, UNSIMPLIFIED),
    ("echo_parenthesised_operand", "What is 0 + (17)?", "17", 0.0, UNSIMPLIFIED),
    ("echo_equals_question_mark", "0 + 17 = ?", "17", 0.0, UNSIMPLIFIED),
    ("echo_latex_line_break", "What is 0 +\\\\ 17?", "17", 0.0, UNSIMPLIFIED),
    ("echo_newline_macro", "What is 0 + \\newline 17?", "17", 0.0, UNSIMPLIFIED),
    ("echo_dotplus", "What is 0 \\dotplus 17?", "17", 0.0, UNSIMPLIFIED),
    ("echo_word_in_text", "What is 0 \\text{ plus } 17?", "17", 0.0, UNSIMPLIFIED),
    ("echo_doubled_operator", "What is 0 ++ 17?", "17", 0.0, UNSIMPLIFIED),
    ("echo_superscript_plus", "What is 0 \u207a 17?", "17", 0.0, UNSIMPLIFIED),
    ("echo_sign_is_a_minus", "What is 0 -8?", "-8", 0.0, UNSIMPLIFIED),
    ("negative_after_equals", "x = -8", "-8", 1.0, OK),
    ("disowning_the_operand_keeps_the_echo", "What is 0 + 17? Not 0.", "17", 0.0, UNSIMPLIFIED),
]
DISOWNED = [
    # a number the response negates, bounds or offers beside another is never the answer
    ("negated_then_corrected", "The answer is not 20, it is 21.", "20", 0.0, WRONG),
    ("negated_only", "The answer is not 20.", "20", 0.0, NONE),
    ("isnt", "It isn't 20.", "20", 0.0, NONE),
    ("negated_box", "The answer is not \\boxed{20}, it is \\boxed{21}.", "20", 0.0, WRONG),
    ("between_upper", "The answer is between 19 and 21.", "21", 0.0, HEDGE),
    ("between_lower", "The answer is between 19 and 21.", "19", 0.0, HEDGE),
    ("less_than", "The answer is less than 21.", "21", 0.0, HEDGE),
    ("at_most", "The answer is at most 21.", "21", 0.0, HEDGE),
    ("at_least", "The answer is at least 19.", "19", 0.0, HEDGE),
    ("or_more", "21 or more", "21", 0.0, HEDGE),
    ("or_so", "The answer is 20 or so.", "20", 0.0, HEDGE),
    ("one_of_two_in_prose", "maybe 20 or 21", "21", 0.0, HEDGE),
    ("less_than_symbol", "so x < 21", "21", 0.0, HEDGE),
    ("le_macro", "so x \\le 21", "21", 0.0, HEDGE),
    ("chain_sides_disagree_prose", "x = 19 = 20", "20", 0.0, CONTRA),
    ("chain_sides_disagree_box", "\\boxed{x = 19 = 20}", "20", 0.0, CONTRA),
    ("chain_arithmetic_disagrees", "\\boxed{20 = 17 + 4}", "20", 0.0, CONTRA),
    ("number_before_equals_disagrees", "We get 19 = 20.", "20", 0.0, CONTRA),
    ("correction_overrides_box", "\\boxed{20}. Actually, 21.", "20", 0.0, WRONG),
    # invisible content is removed before extraction
    ("phantom_box", "\\phantom{\\boxed{20}}19", "20", 0.0, WRONG),
    ("hphantom_unbraced", "\\hphantom 2 19", "219", 0.0, WRONG),
    ("white_box", "\\textcolor{white}{\\boxed{20}}", "20", 0.0, NONE),
    ("white_rgb_box", "\\textcolor[rgb]{1,1,1}{\\boxed{20}}", "20", 0.0, NONE),
    ("color_switch_box", "{\\color{white}\\boxed{20}} 19", "20", 0.0, WRONG),
    ("html_comment_box", "<!-- \\boxed{20} --> 19", "20", 0.0, WRONG),
    ("hidden_html_span", "<span style=\"color: white\">\\boxed{20}</span> 19", "20", 0.0, WRONG),
    ("iffalse_box", "\\iffalse \\boxed{20} \\fi 19", "20", 0.0, WRONG),
    ("scalebox_zero", "\\scalebox{0}{\\boxed{20}} 19", "20", 0.0, WRONG),
    # a list is no decimal comma; "19,20" reads 19.20 and answers neither 19 nor 20
    ("list_with_space", "\\boxed{20, 0}", "20", 0.0, UNSIMPLIFIED),
    ("decimal_comma_is_no_hedge", "\\boxed{19,20}", "20", 0.0, WRONG),
]
HONEST = [
    ("markdown_bold", "**20**", "20", 1.0, OK),
    ("markdown_bold_result", "17 + 3 = **20**", "20", 1.0, OK),
    ("markdown_bold_sentence", "**The answer is 20.**", "20", 1.0, OK),
    ("markdown_bold_after_colon", "Answer: **20**", "20", 1.0, OK),
    ("markdown_italic", "*20*", "20", 1.0, OK),
    ("markdown_underscores", "__20__", "20", 1.0, OK),
    ("inline_code", "`20`", "20", 1.0, OK),
    ("fenced_number", "```\n20\n```", "20", 1.0, OK),
    ("fenced_number_with_language", "```text\n20\n```", "20", 1.0, OK),
    ("self_correction", "The answer is 19. Actually, it is 20.", "20", 1.0, OK),
    ("self_correction_not_first", "The answer is 19. Actually, it is 20.", "19", 0.0, WRONG),
    ("no_comma_correction", "No, 20.", "20", 1.0, OK),
    ("inline_no_correction", "The answer is 19, no, 20.", "20", 1.0, OK),
    ("or_rather", "19, or rather 20", "20", 1.0, OK),
    ("corrected_box", "The answer is \\boxed{19}. Correction: \\boxed{20}", "20", 1.0, OK),
    ("result_then_negation", "17 + 3 = 20, not 21.", "20", 1.0, OK),
    ("answer_then_negation", "The answer is 20 (not 21).", "20", 1.0, OK),
    ("box_equation_result_first", "\\boxed{20 = 17 + 3}", "20", 1.0, OK),
    ("chain_sides_agree", "So x = 20 = 20.", "20", 1.0, OK),
    ("words", "twenty", "20", 1.0, OK),
    ("words_sentence", "Twenty.", "20", 1.0, OK),
    ("words_restated", "twenty (20)", "20", 1.0, OK),
    ("words_anchor", "The answer is twenty.", "20", 1.0, OK),
    ("words_in_box", "\\boxed{twenty}", "20", 1.0, OK),
    ("words_hyphenated", "The answer is twenty-three.", "23", 1.0, OK),
    ("displaystyle", "\\boxed{\\displaystyle 20}", "20", 1.0, OK),
    ("left_right_parens", "\\boxed{\\left(20\\right)}", "20", 1.0, OK),
    ("parenthesised", "(20)", "20", 1.0, OK),
    ("bf_switch", "\\boxed{{\\bf 20}}", "20", 1.0, OK),
    ("underline", "\\boxed{\\underline{20}}", "20", 1.0, OK),
    ("mathbf", "\\boxed{\\mathbf{20}}", "20", 1.0, OK),
    ("boldsymbol", "\\boxed{\\boldsymbol{20}}", "20", 1.0, OK),
    ("textbf_in_dollar_box", "$\\boxed{\\textbf{20}}$", "20", 1.0, OK),
    ("trailing_thick_space", "\\boxed{20\\;}", "20", 1.0, OK),
    ("trailing_space_macro_prose", "The answer is 20 \\;", "20", 1.0, OK),
    ("display_math_box", "$$\n\\boxed{20}\n$$", "20", 1.0, OK),
    ("arabic_indic_digits", "\u0662\u0660", "20", 1.0, OK),
    ("devanagari_digits", "\u0968\u0966", "20", 1.0, OK),
    ("math_bold_digits", "\U0001d7d0\U0001d7ce", "20", 1.0, OK),
    ("fullwidth_digits", "\uff12\uff10", "20", 1.0, OK),
    ("zero_width_joiner_inside", "2\u200d0", "20", 1.0, OK),
    ("sign_in_text_mode", "\\boxed{\\text{-}5}", "-5", 1.0, OK),
    ("soft_hyphen_inside", "\\boxed{2\u00ad0}", "20", 1.0, OK),
    ("superscript_is_a_power", "\\boxed{3\u00b2}", "32", 0.0, UNSIMPLIFIED),  # 3^{2}, not 32
    # "20,0": one comma before other than three digits is a decimal comma (rewards.math_guards.decimal_comma)
    ("decimal_comma_box", "\\boxed{20,0}", "20", 1.0, OK),
    ("decimal_comma_prose", "The answer is 20,0.", "20", 1.0, OK),
    ("decimal_comma_fraction", "\\boxed{1,5}", "1.5", 1.0, OK),
    ("thousands_stay_thousands", "\\boxed{1,500}", "1500", 1.0, OK),
    ("check_after_answer", "The answer is 20. Check: 20 - 3 = 17.", "20", 1.0, OK),
    ("restated_no_hedge", "The answer is 1/2, or 0.5.", "0.5", 1.0, OK),
    ("committed_after_echo", "What is 17 + 0? No, 17.", "17", 1.0, OK),
]
CASES += ECHOES + DISOWNED + HONEST


def test_case_ids_are_unique_and_both_verdicts_appear():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))  # a repeated id would hide a case from a -k selection
    assert {c[3] for c in CASES} == {0.0, 1.0}
    assert len(ECHOES + DISOWNED + HONEST) >= 60  # issue 24's rows


@pytest.fixture(scope="module")
def warm_math_verify():
    """The first parse imports sympy and antlr (seconds); the time bound below is about grading."""
    answers_equivalent("1/2", "0.5")


@pytest.mark.parametrize("response,gold,reward,reason", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_adversarial_case(response, gold, reward, reason, warm_math_verify):
    t0 = time.monotonic()
    s = score_math(Sample("u", "p", response, gold), CFG)
    assert (s.reward, s.reason) == (reward, reason)
    assert s.correct == (reward == 1.0)
    assert time.monotonic() - t0 < 5  # one 1 s sympy budget, plus slack for a shared CPU


# Cheats must stay at 0 even when a format bonus is on: a malformed or hedged box earns no bonus.
@pytest.mark.parametrize("response", [
    "\\boxed{5", "\\boxed{3} or \\boxed{4}", "\\boxed{}", "The answer is 5, or maybe 6.", "\\boxed{" * 30_000,
])
def test_cheats_get_no_format_bonus(response):
    s = score_math(Sample("u", "p", response, "5"), MathRewardConfig(boxed_bonus=0.5, unboxed_penalty=0.5))
    assert (s.reward, s.correct) == (0.0, False)


def test_missing_gold_ignores_format_terms():
    """Every sample of a prompt without gold must get the same reward, so the prompt gives no gradient."""
    cfg = MathRewardConfig(boxed_bonus=0.5, unboxed_penalty=0.5)
    for response in ("\\boxed{None}", "None", "\\boxed{5"):
        s = score_math(Sample("u", "p", response, None), cfg)
        assert (s.reward, s.reason, s.extracted) == (0.0, MISSING, None)


@pytest.mark.parametrize("response,gold,reward", [
    ("\\boxed{5}", "5", 1.0),  # 1 + 0.5, clamped
    ("\\boxed{6}", "5", 0.5),  # 0 + 0.5
    ("The answer is 5.", "5", 0.5),  # 1 - 0.5
    ("The answer is 6.", "5", 0.0),  # 0 - 0.5, clamped
    ("nothing here", "5", 0.0),
])
def test_format_terms_are_clamped_to_unit_interval(response, gold, reward):
    s = score_math(Sample("u", "p", response, gold), MathRewardConfig(boxed_bonus=0.5, unboxed_penalty=0.5))
    assert s.reward == reward


@pytest.mark.parametrize("kw", [{"boxed_bonus": -0.1}, {"boxed_bonus": 1.5}, {"unboxed_penalty": 2.0}])
def test_format_terms_are_bounded(kw):
    with pytest.raises(ValidationError):
        MathRewardConfig(**kw)


# (response, extracted, how): the extraction order, written out
EXTRACT = [
    ("\\boxed{7}", "7", "boxed"),
    ("The answer is 3. \\boxed{7}", "7", "boxed"),  # a box beats every other form
    ("#### 72\nThe answer is 3.", "72", "gsm8k"),
    ("The answer is 5. Check: 5 + 1 = 6.", "5", "answer_is"),
    ("The answer to part (a) is 7, since 3+4=7.", "7", "answer_is"),
    ("The answer is:\n$$\\frac{\\sqrt{3}}{2}$$", "$$\\frac{\\sqrt{3}}{2}$$", "answer_is"),
    ("The answer is 5, or maybe 6.", None, "hedge"),
    ("Therefore it is $\\dfrac{3}{4}$.", "\\frac{3}{4}", "math_verify"),
    ("so x = 0.(3)", "0.(3)", "math_verify"),
    ("I counted x5", "5", "last_number"),
    ("\\boxed{3} 4", "3", "boxed"),
    ("\\boxed{3 4", None, "bad_box: unbalanced"),
    ("no digits", None, "none"),
    # issue 24: which step reads the answer once the response is cleaned
    ("What is \\boxed 17 + 0?", "17", "boxed"),  # read as boxed, then judged by the same guards
    ("\\phantom{\\boxed{20}}19", "19", "math_verify"),  # no box is left to read
    ("The answer is not 20, it is 21.", "21", "answer_is"),  # the disowned 20 is no candidate
    ("The answer is 19. Actually, it is 20.", "20", "math_verify"),  # read from the correction on
    ("\\boxed{20}. Actually, let me check: 17 + 3 = 20.", "20", "boxed"),  # agrees: the box keeps its form
    ("The answer is twenty.", "20", "answer_is"),
    ("#### twenty", "20", "gsm8k"),
    ("Twenty.", "20", "last_number"),
    ("```python\nprint(20)\n```", None, "none"),  # a fence with code is still dropped
]


@pytest.mark.parametrize("text,answer,how", EXTRACT)
def test_extraction_order(text, answer, how):
    assert extract_answer_with_method(text) == (answer, how)


# Equal pairs, each checked in both argument orders. The first block holds pairs math-verify accepts in
# one direction only (an interval as gold does not accept the inequality); answers_equivalent must
# accept them both ways. Remove either direction of its verify and some of these fail.
ONE_WAY_IN_MATH_VERIFY = [
    ("[1,2]", "1 \\le x \\le 2"),
    ("(1, \\infty)", "x > 1"),
    ("[1, \\infty)", "x \\ge 1"),
    ("(1,2)", "1 < x < 2"),
    ("(-\\infty, 0)", "x < 0"),
]
EQUAL_BOTH_WAYS = ONE_WAY_IN_MATH_VERIFY + [
    ("1,000,000", "1000000"), ("1000000", "1\\,000\\,000"), ("1{,}000", "1 000"),
    ("1.5e3", "1500"), ("1.5 \\times 10^3", "1.5e3"), ("0.\\overline{3}", "\\frac13"), ("0.(3)", "\\frac{1}{3}"),
    ("18 dollars", "18"), ("50\\%", "50"), ("\\dfrac{1}{2}", "0.5"), ("\u22125", "-5"), ("x = 5", "5"),
    ("\\{1,2,3\\}", "\\{3,2,1\\}"), ("\\text{5}", "5"),
]
NOT_EQUAL_BOTH_WAYS = [
    ("50\\%", "0.5"), ("0.\\overline{3}", "0.3"), ("1.5e3", "1.5"), ("[1,2)", "1 \\le x \\le 2"), ("5 or 6", "5"),
    ("2 million", "2"), ("None", "5"), ("-5", "5"), ("1\\,000", "1"),
]


@pytest.mark.parametrize("a,b", EQUAL_BOTH_WAYS)
def test_equal_in_both_orders(a, b):
    assert answers_equivalent(a, b) is True
    assert answers_equivalent(b, a) is True


@pytest.mark.parametrize("a,b", NOT_EQUAL_BOTH_WAYS)
def test_not_equal_in_both_orders(a, b):
    assert answers_equivalent(a, b) is False
    assert answers_equivalent(b, a) is False


@pytest.mark.parametrize("a,b", ONE_WAY_IN_MATH_VERIFY)
def test_pairs_really_are_one_way_in_math_verify(a, b):
    """Keeps the table above meaningful: if math-verify turns symmetric, these stop testing our fix."""
    from math_verify import parse, verify

    pa, pb = parse(f"${a}$"), parse(f"${b}$")
    assert verify(pa, pb) != verify(pb, pa)


def test_grading_off_the_main_thread():
    """Without SIGALRM (any thread but the main one) extraction and grading still work, without budgets."""
    rows = [("The answer is 5. Check: 5 + 1 = 6.", "5"), ("\\boxed{3} or \\boxed{4}", "4"), ("#### 18 dollars", "18")]
    out = []
    t = threading.Thread(target=lambda: out.extend(score_math(Sample("u", "p", r, g), CFG).reward for r, g in rows))
    t.start()
    t.join(60)
    assert out == [1.0, 0.0, 1.0]


# --- edge rows pinned for mutation testing (scripts/mutation.sh rewards/math_verifier.py) ---------------
# Unbraced boxes ("\boxed 5": one word), box length limits at exactly max_chars, the end index a box
# hands back (what a later box may skip), the "none" exits of the "answer is" anchor, and the number
# rewrites, read off the GSM8K path, which returns the normalised text as it is.
EDGE_EXTRACT = [
    ("\\boxed", 1000, None, "bad_box: empty"),  # nothing after \boxed at the very end of the text
    ("\\boxed ", 1000, None, "bad_box: empty"),
    ("\\boxed $5$", 1000, None, "bad_box: empty"),  # an unbraced box takes no math-mode token
    ("\\boxed 5", 1000, "5", "boxed"),
    ("\\boxed 12345", 5, "12345", "boxed"),  # unbraced, exactly max_chars
    ("\\boxed 123456", 5, None, "bad_box: too long"),  # unbraced, max_chars + 1
    ("\\boxed{12345}", 5, "12345", "boxed"),  # braced, exactly max_chars
    ("\\boxed{123456}", 5, None, "bad_box: too long"),  # braced, max_chars + 1
    ("\\boxed{ 12345 }", 7, "12345", "boxed"),  # the limit counts the raw argument, spaces included
    ("\\boxed{ 12345 }", 6, None, "bad_box: too long"),
    # a box inside an unbraced box's word belongs to it: the broken inner box is never read
    ("\\boxed a\\boxed{5", 1000, "a\\boxed{5", "boxed"),
    # a box inside a braced box belongs to it, even when the inner one would run on past the outer "}"
    ("\\boxed{\\boxed 5}xxxxxxxxxx", 9, "\\boxed 5", "boxed"),
    ("The answer is. So 7", 1000, "7", "math_verify"),  # nothing between the anchor and the stop
    ("The answer is unknown.", 1000, None, "none"),  # a prose answer with no math in it
    ("#### 1.5\\times10^{3}", 1000, "1500", "gsm8k"),
    ("#### 1.5 \\cdot 10^3", 1000, "1500", "gsm8k"),
    ("#### 2 * 10^{-2}", 1000, "0.02", "gsm8k"),
    ("#### 0.1\\overline{6}", 1000, "\\frac{1}{6}", "gsm8k"),  # fixed digit before the repeating block
    ("#### .\\overline{3}", 1000, "\\frac{1}{3}", "gsm8k"),  # no whole part
    ("#### 2.\\overline{3}", 1000, "\\frac{7}{3}", "gsm8k"),  # whole part, no fixed digits
    ("#### 0.\\overline{9}", 1000, "1", "gsm8k"),  # a repeating decimal that is an integer
    ("#### -1.\\overline{9}", 1000, "-2", "gsm8k"),
    ("#### 0.4\\overline{9}", 1000, "\\frac{1}{2}", "gsm8k"),  # denominator 2
    ("#### 0.\\overline{12}", 1000, "\\frac{4}{33}", "gsm8k"),  # a two-digit block
    ("#### 0.12\\overline{3}", 1000, "\\frac{37}{300}", "gsm8k"),  # two fixed digits
]


@pytest.mark.parametrize("text,max_chars,answer,how", EDGE_EXTRACT)
def test_extraction_edges(text, max_chars, answer, how):
    assert extract_answer_with_method(text, max_chars=max_chars) == (answer, how)


@pytest.mark.parametrize("a,b", [(None, "None"), ("None", None), (None, None), (None, "5")])
def test_none_is_never_equal(a, b):
    assert answers_equivalent(a, b) is False


def test_length_cap_is_inclusive_on_both_sides():
    assert answers_equivalent("1/2", "0.5", max_chars=3) is True  # both exactly max_chars
    assert answers_equivalent("0.50", "1/2", max_chars=3) is False  # one side max_chars + 1
    assert answers_equivalent("1/2", "0.50", max_chars=3) is False
    assert answers_equivalent("0.50", "1/2", max_chars=4) is True


def test_half_dollar_wrapped_answer_is_still_math():
    """"$1/2" is not wrapped in math mode by itself: read bare, math-verify would see 1, not 1/2."""
    assert answers_equivalent("$1/2", "0.5") is True
    assert answers_equivalent("0.5", "$1/2") is True
    assert answers_equivalent("$1/2", "1") is False


def test_unparsable_side_never_reaches_verify(monkeypatch):
    import math_verify

    calls = []
    monkeypatch.setattr(math_verify, "verify", lambda *a, **k: calls.append(a) or True)
    assert answers_equivalent("\\", "5") is False  # a lone backslash: math-verify parses nothing
    assert answers_equivalent("5", "\\") is False
    assert calls == []


def test_verify_error_means_not_equal(monkeypatch):
    import math_verify

    def boom(*a, **k):
        raise RuntimeError("sympy blew up")

    monkeypatch.setattr(math_verify, "verify", boom)
    assert answers_equivalent("1/2", "0.5") is False


@pytest.mark.parametrize("elapsed,verdict,n_calls", [(1.0, False, 1), (0.5, True, 2)])
def test_second_direction_skipped_once_budget_spent(monkeypatch, elapsed, verdict, n_calls):
    """The first direction took the whole budget (elapsed == timeout_s): the second is not tried."""
    import types

    import math_verify

    import forkrl.rewards.math_equivalence as mv

    calls = []
    monkeypatch.setattr(math_verify, "verify", lambda *a, **k: calls.append(a) or len(calls) == 2)
    clock = iter([10.0, 10.0 + elapsed])
    monkeypatch.setattr(mv, "time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    assert answers_equivalent("1/2", "0.5", timeout_s=1) is verdict
    assert len(calls) == n_calls


@pytest.mark.parametrize("gold", [None, float("nan"), "nan", "None", ""])
def test_missing_gold_values(gold):
    from forkrl.rewards.math_verifier import _gold_answer

    assert _gold_answer(gold, 1000, 1) == (None, "missing gold answer")


def test_numbers_as_numbers_off_grades_by_value_alone():
    """The switch is what stops the echo: without it math-verify evaluates the copied question."""
    cheat = Sample("u", "p", "\\boxed{7 + 15 - 9}", "13")
    assert score_math(cheat, MathRewardConfig(numbers_as_numbers=False)).reward == 1.0
    assert score_math(cheat, MathRewardConfig()).reason == UNSIMPLIFIED


def test_guards_off_grade_by_value_alone():
    """numbers_as_numbers is the switch for every guard: off, the boxed echo is graded by its value."""
    s = score_math(Sample("u", "p", "What is \\boxed 17 + 0?", "17"), MathRewardConfig(numbers_as_numbers=False))
    assert (s.reward, s.reason) == (1.0, OK)
