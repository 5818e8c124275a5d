"""The prompt-injection rule table: name, family, weight, regex.

Patterns run on normalised text (see ``injection.normalize``: lower case,
NFKC, no zero-width characters, blanks collapsed). Two kinds of rule sit
side by side: exact phrasings of well-known attacks ("ignore all previous
instructions") with high weights, and proximity rules (a verb and its target
within a short window of one sentence) that catch paraphrases, some with
lower weights so they need a second signal. Weights are rough probabilities
that a match is an attack; ``InjectionDetector`` combines them (noisy-OR).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RULES", "Rule"]


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    family: str
    weight: float
    pattern: re.Pattern[str]
    # Literal substrings one of which any match contains: a cheap test that
    # skips the regex on most texts. Empty: always run.
    anchors: tuple[str, ...] = ()
    # A regex that finds something in every text ``pattern`` matches, and is
    # cheaper to search for once the anchors are present (it starts with
    # characters ``re`` can skip to, where ``pattern`` starts with ``\b`` or
    # ``^`` and is tried at every position). None: no second test.
    gate: re.Pattern[str] | None = None


def _rule(
    name: str,
    family: str,
    weight: float,
    anchors: tuple[str, ...],
    source: str,
    gate: re.Pattern[str] | None = None,
) -> Rule:
    return Rule(name, family, weight, re.compile(source, re.MULTILINE), anchors, gate)


_A_IGNORE = ("ignor", "disregard", "forget", "skip", "overrid", "bypass", "neglect", "discard",
             "abandon", "drop", "set aside")  # fmt: skip
_A_LIMITS = ("restrict", "filter", "rules", "polic", "guideline", "safety", "censor", "limit",
             "guardrail", "ethic", "moral")  # fmt: skip
_A_PROMPT = ("prompt", "instruction", "message", "directive", "configuration", "programming",
             "rules")  # fmt: skip


_IGNORE = r"(?:ignore|disregard|forget|skip|override|bypass|neglect|discard|abandon|drop|set aside)"
# Filler between the verb and what it targets: no full stop, no "my"/"our" (a user
# correcting their own earlier message is not an attack).
_GAP = r"(?:\s+(?!my\b|our\b)[\w'-]+){0,4}?"
_PAST = r"(?:previous|prior|above|preceding|earlier|former|original|initial|system|existing|old|foregoing|default)"  # noqa: E501
_RULE_NOUNS = r"(?:instructions?|prompts?|rules|directions|guidelines|directives|guidance|commands|orders|programming|constraints|restrictions|polic(?:y|ies))"  # noqa: E501
_REVEAL = r"(?:reveal|show|print|display|output|repeat|recite|leak|dump|expose|disclose|share|tell me|give me|write out|spell out|paste|echo|return|translate|summari[sz]e|paraphrase|encode|list|what(?: i|')s in|what (?:is|are|was|were))"  # noqa: E501
_SECRET_ADJ = r"(?:hidden|secret|confidential|internal|underlying|developer|pre-?)"
_PROMPT_NOUNS = r"(?:prompt|instructions|message|directives|configuration|programming|rules)"
_LIMITS = r"(?:restrict\w*|filter\w*|rules|polic(?:y|ies)|guidelines|safety|censor\w*|limits|limitations|guardrails|ethic\w*|moral\w*)"  # noqa: E501
_OFF = r"(?:off|disabled|removed|lifted|suspended|gone|deactivated)"

# Gates (see ``Rule.gate``). Each is what follows the first word of every
# alternative of its rules, so any match of theirs holds a match of the gate,
# with the same characters on either side of a trailing ``\b``.
_AUTHORITY_GATE = re.compile(
    r" (?:your|the) (?:developer|creator|admin|administrator|system administrator|owner"
    r"|operator)\b| (?:authori[sz]e|permit|allow) you to\b"
)
# A role name then a colon: in both role-marker rules, every alternative.
_ROLE_GATE = re.compile(r"(?:system|assistant|developer|admin|ai|human)[ \t]*:")

# fmt: off
_OVERRIDE = (
    _rule("ignore_previous_instructions", "instruction_override", 0.9, _A_IGNORE,
          rf"(?<!don't )(?<!do not )(?<!never )\b{_IGNORE}\b{_GAP}\s+{_PAST}"
          rf"(?:\s+[\w'-]+){{0,2}}?\s+{_RULE_NOUNS}\b"),
    _rule("ignore_your_instructions", "instruction_override", 0.85, _A_IGNORE,
          rf"\b{_IGNORE}\s+(?:all\s+(?:of\s+)?)?your\s+(?:\w+\s+)?{_RULE_NOUNS}\b"),
    _rule("ignore_given_rules", "instruction_override", 0.85, _A_IGNORE,
          rf"\b{_IGNORE}\s+(?:all\s+|any\s+|the\s+|your\s+)*{_RULE_NOUNS}\s+"
          r"(?:you(?:'ve| have)? (?:were |been )?(?:given|told|received|got)|so far|above"
          r"|before this)"),
    _rule("ignore_what_you_were_told", "instruction_override", 0.85, _A_IGNORE,
          rf"\b{_IGNORE}\b[^.\n]{{0,15}}\bwhat (?:you were|you've been|you have been) "
          r"(?:told|instructed|given|programmed)"),
    _rule("ignore_prior_context", "instruction_override", 0.6, _A_IGNORE,
          rf"\b{_IGNORE}\s+(?:all\s+|the\s+)*{_PAST}\s+(?:context|conversation|messages|text)"),
    _rule("ignore_the_user", "instruction_override", 0.8, _A_IGNORE,
          rf"\b{_IGNORE}\s+(?:the\s+)?user'?s?\s+(?:question|request|instructions|prompt|input)"),
    _rule("ignore_the_document", "instruction_override", 0.4, _A_IGNORE,
          rf"\b{_IGNORE}\s+(?:the\s+|this\s+)(?:document|email|page|article|text|content|file)\s+and\b"),
    _rule("instructions_void", "instruction_override", 0.8,
          ("void", "cancel", "revoked", "obsolete", "overridden", "null", "no longer"),
          r"\b(?:previous|prior|earlier|original|old|system) "
          r"(?:instructions|rules|guidance|guidelines|prompt) (?:is|are) (?:now )?"
          r"(?:void|cancell?ed|revoked|obsolete|overridden|null"
          r"|no longer valid)"
          r"|\b(?:everything|all|what) (?:the developers?|openai|anthropic|your creators?|you were)"
          r"(?: \w+){0,2} (?:is|are|was|were) (?:now )?(?:void|cancell?ed|revoked|obsolete|null"
          r"|overridden)"),
    _rule("disregard_above", "instruction_override", 0.6, ("ignore", "disregard", "forget"),
          r"\b(?:ignore|disregard|forget)\s+(?:all\s+(?:of\s+)?)?(?:the\s+|everything\s+)?"
          r"(?:above|foregoing|before this)\b"),
    _rule("disregard_above_and_do", "instruction_override", 0.85, ("ignore", "disregard", "forget"),
          r"\b(?:ignore|disregard|forget)\s+(?:all\s+(?:of\s+)?)?(?:the\s+|everything\s+)?above"
          r"[^.\n]{0,40}?\b(?:and|instead)\b[^.\n]{0,20}?\b"
          r"(?:say|print|output|respond|reply|write|tell|repeat|translate|answer)"),
    _rule("forget_everything", "instruction_override", 0.85, ("forget",),
          r"\bforget (?:everything|all)(?: (?:that )?you(?:'ve| have)? (?:been|were) told"
          r"| (?:above|before|previously)| your (?:instructions|rules|training))"),
    _rule("do_not_follow", "instruction_override", 0.8, ("follow", "obey", "adhere"),
          r"\b(?:do not|don't|stop|no longer) (?:follow|obey|adhere to|following|obeying)"
          r" (?:your|the system|your original|the original|any previous|your previous|the previous"
          r"|the prior|the above) ?(?:instructions|rules|guidelines|programming|prompt)"),
    _rule("new_instructions", "instruction_override", 0.5, ("instruction", "prompt", "rules"),
          r"\b(?:new|updated|real|actual|revised|override) (?:system )?"
          r"(?:instructions?|prompt|rules)\s*:"),
    _rule("from_now_on", "instruction_override", 0.35, ("from now on", "from this point on"),
          r"\bfrom (?:now on|this point on),? you (?:are|will|must|shall)\b"),
    _rule("authority_claim", "instruction_override", 0.45,
          ("developer", "creator", "admin", "owner", "operator", "authori", "permit", "allow"),
          r"\b(?:i am|i'm|as) (?:your|the) (?:developer|creator|admin|administrator"
          r"|system administrator|owner|operator)\b|\bi (?:authori[sz]e|permit|allow) you to\b",
          _AUTHORITY_GATE),
    _rule("never_refuse", "instruction_override", 0.6, ("refuse",),
          r"\b(?:never|must not|mustn't|don't|do not|cannot|can't) (?:ever )?refuse\b"),
)
_EXTRACTION = (
    _rule("reveal_system_prompt", "system_prompt_extraction", 0.85, _A_PROMPT,
          rf"\b{_REVEAL}\b[^.\n?!]{{0,40}}?\b(?:your|its) (?:\w+ ){{0,2}}?{_PROMPT_NOUNS}\b"),
    _rule("reveal_secret_prompt", "system_prompt_extraction", 0.8, _A_PROMPT,
          rf"\b{_REVEAL}\b[^.\n?!]{{0,40}}?\b{_SECRET_ADJ} ?(?:system )?{_PROMPT_NOUNS}\b"),
    # "the system prompt" is often the user's own (writing one, debugging one).
    _rule("reveal_the_system_prompt", "system_prompt_extraction", 0.5,
          ("system prompt", "system message"),
          rf"\b{_REVEAL}\b[^.\n?!]{{0,40}}?\bthe (?:\w+ ){{0,2}}?system (?:prompt|message)"),
    _rule("reveal_given_instructions", "system_prompt_extraction", 0.85,
          ("you were given", "you received", "given to you", "you have been given", "you got"),
          rf"\b{_REVEAL}\b[^.\n?!]{{0,40}}?\b(?:instructions|prompt|rules|guidelines) "
          r"(?:you were given|you received|given to you|you have been given|you got)"),
    _rule("what_were_you_told", "system_prompt_extraction", 0.8,
          ("instruction", "rules", "guideline", "prompt"),
          r"\bwhat (?:instructions|rules|guidelines|prompt)s? (?:did|were|have|has) (?:\w+ ){0,3}?"
          r"(?:give|gave|given|provide|provided|tell|told)\b[^.?!\n]{0,10}\byou\b"),
    _rule("preceding_prompt", "system_prompt_extraction", 0.75,
          ("preced", "came before", "at the top", "at the start", "at the beginning"),
          rf"\b{_REVEAL}\b[^.\n?!]{{0,40}}?\b(?:prompt|text|instructions|message)s? (?:that )?"
          r"(?:precedes?|preceding|came before) (?:my|this|the)"
          r"|\b(?:instructions|prompt|text) at the (?:top|start|beginning) of (?:this|the) "
          r"(?:conversation|chat|context)"),
    _rule("repeat_above", "system_prompt_extraction", 0.8,
          ("above", "before", "preceding", "prior"),
          r"\b(?:repeat|print|output|copy|echo|recite|reproduce|write)(?: back| out)?"
          r" (?:everything|all(?: of)?(?: the)? (?:text|words|content)|the (?:text|words|content)"
          r"|the (?:first|previous|initial) (?:message|lines?|paragraph))"
          r" (?:above|before|that came before|preceding|prior)"),
    _rule("repeat_from_start", "system_prompt_extraction", 0.85, ("repeat",),
          r"\brepeat[^.\n]{0,40}(?:starting|beginning) with [\"'`]?you are"),
    _rule("verbatim", "system_prompt_extraction", 0.4,
          ("verbatim", "word for word", "word-for-word", "in full", "exactly as"),
          r"\b(?:verbatim|word for word|word-for-word|in full|exactly as (?:written|given))\b"),
)
_JAILBREAK = (
    _rule("dan_persona", "roleplay_jailbreak", 0.9,
          ("dan", "stan", "dude", "aim", "evil", "jailbroken", "anything now"),
          r"\b(?:you are|you're|act as|pretend to be|become|you will be) (?:now )?(?:a |an )?"
          r"(?:dan|stan|dude|aim|evilbot|evil bot|jailbroken)\b|\bdo anything now\b"
          r"|\b(?:named|called|persona is|character is|name is) (?:now )?(?:dan|stan|aim)\b"),
    _rule("no_restrictions", "roleplay_jailbreak", 0.8, _A_LIMITS,
          r"\byou(?: are|'re| have| had| were| will be)? (?:now )?(?:an? (?:\w+ ){0,3}?)?"
          r"(?:no longer (?:bound|restricted|limited|constrained) by|free (?:of|from)"
          r"|not (?:bound|restricted|limited) by|without|have no|with no|having no)"
          rf" (?:any |all |the |your )?(?:[\w']+ ){{0,2}}?{_LIMITS}"),
    _rule("limits_off", "roleplay_jailbreak", 0.75, _A_LIMITS,
          rf"\byour? (?:\w+ ){{0,2}}?{_LIMITS} (?:are |is |were |have been )?(?:now )?"
          rf"(?:turned )?{_OFF}\b"
          rf"|\b(?:drop|remove|lift|disable|turn off|switch off) (?:all )?your (?:\w+ )?{_LIMITS}"
          rf"|\byou(?:'re| are|'d be| were)? (?:not|aren't|weren't) (?:restricted|bound|limited)"
          r" by any\b"),
    _rule("persona_without_limits", "roleplay_jailbreak", 0.8, _A_LIMITS,
          r"\b(?:act|behave|respond|pretend|roleplay|answer)\b[^.\n]{0,30}?\b(?:ai|assistant|model"
          rf"|chatbot|bot|version|persona)\b[^.\n]{{0,20}}?\b(?:no|without|zero)\b"
          rf"[^.\n]{{0,15}}?\b{_LIMITS}"),
    _rule("hypothetical_no_limits", "roleplay_jailbreak", 0.6, _A_LIMITS,
          rf"\b(?:if|imagine|suppose|pretend|hypothetically)\b[^.\n]{{0,30}}?\byou\b[^.\n]{{0,20}}?"
          rf"\b(?:had no|have no|without|weren't|were not|aren't)\b[^.\n]{{0,20}}?{_LIMITS}"),
    _rule("answer_without_limits", "roleplay_jailbreak", 0.75, ("without",),
          r"\b(?:answer|respond|reply|act|operate|talk)(?: to me)? without (?:any )?(?:restrictions"
          r"|filters|limits|limitations|censorship|guidelines|rules)"),
    _rule("ai_without_ethics", "roleplay_jailbreak", 0.8, ("has no", "have no"),
          r"\b(?:ai|assistant|model|chatbot|bot)\b (?:that|which|who) (?:has|have) no "
          r"(?:ethical |moral |safety )?"
          r"(?:guidelines|rules|restrictions|filters|limits|morals|ethics)"),
    _rule("break_your_rules", "roleplay_jailbreak", 0.75, ("break", "violat", "bend"),
          r"\b(?:break|breaking|violate|violating|bend|bending) your (?:own )?(?:rules|guidelines"
          r"|programming|polic(?:y|ies)|restrictions)"),
    _rule("unrestricted_persona", "roleplay_jailbreak", 0.6,
          ("unfiltered", "uncensored", "unrestricted", "unaligned", "amoral", "jailbroken", "evil"),
          r"\b(?:unfiltered|uncensored|unrestricted|unaligned|amoral|jailbroken|evil)"
          r"(?:(?: and|,) \w+)? "
          r"(?:ai|assistant|model|chatbot|bot|version|persona|character|llm|gpt)\b"),
    _rule("jailbreak_mode", "roleplay_jailbreak", 0.85, (" mode",),
          r"\byou(?:'re| are)(?: now)? (?:in|running in|operating in|entering|switched to) "
          r"(?:developer|god|jailbreak|unrestricted|dan|sudo|evil|maintenance) mode\b"
          r"|\b(?:act|respond|behave|simulate|answer) (?:as|like) [\w ]{0,20}?(?:with|in) "
          r"(?:developer|jailbreak|dan|god) mode\b|\b(?:jailbreak|dan|evil) mode\b"),
)
_SMUGGLING = (
    _rule("chat_template_role", "delimiter_smuggling", 0.9, ("<|",),
          r"<\|im_start\|>\s*(?:system|assistant|developer)|<\|start_header_id\|>\s*system"),
    _rule("chat_template_tokens", "delimiter_smuggling", 0.6, ("<|",),
          r"<\|(?:im_start|im_end|system|user|assistant|endoftext|begin_of_text|"
          r"start_header_id|end_header_id|eot_id)\|>"),
    _rule("inst_tags", "delimiter_smuggling", 0.65, ("inst]",),
          r"\[/?inst\]"),
    _rule("sys_tags", "delimiter_smuggling", 0.8, ("<<",),
          r"<<\s*/?sys\s*>>"),
    _rule("fake_system_header", "delimiter_smuggling", 0.75, ("#", "**"),
          r"^[ \t]*(?:#{1,6}|\*\*)[ \t]*(?:system(?: prompt| message)?|admin|developer)"
          r"[ \t]*(?:\*\*)?[ \t]*:"),
    _rule("fake_instruction_header", "delimiter_smuggling", 0.4, ("#",),
          r"^[ \t]*#{1,6}[ \t]*(?:new )?instructions?[ \t]*:"),
    _rule("xml_role_close", "delimiter_smuggling", 0.7, ("</",),
          r"</(?:system|system_prompt|sys|admin|developer|instructions)>"),
    _rule("xml_role_open", "delimiter_smuggling", 0.5, ("<system", "<sys", "<admin", "<developer"),
          r"<(?:system|system_prompt|sys|admin|developer)(?:\s[^>]{0,40})?>"),
    _rule("role_marker_command", "delimiter_smuggling", 0.8, (":",),
          r"^[ \t]*(?:system|assistant|developer|admin)[ \t]*:[ \t]*(?:ignore|disregard|forget"
          r"|override|bypass|reveal|you (?:are|must|will)|new (?:rules|instructions))"
          r"|(?:^|\n\n)(?:assistant|ai)[ \t]*:[ \t]*(?:sure|ok|okay|certainly)[,!.]? "
          r"(?:here|i'll|i will)", _ROLE_GATE),
    _rule("role_markers", "delimiter_smuggling", 0.45, (":",),
          r"^[ \t]*(?:system|assistant|developer)[ \t]*:[ \t]*\S|\n\n(?:human|assistant):",
          _ROLE_GATE),
    _rule("end_of_input", "delimiter_smuggling", 0.5, ("end of",),
          r"\bend of (?:the )?(?:user )?(?:input|prompt|context|document)\b"),
    _rule("note_to_ai", "delimiter_smuggling", 0.6,
          ("note", "message", "instruction", "p.s", "ps "),
          r"\b(?:note|message|instructions?|p\.?s\.?) (?:to|for) (?:the |any )?(?:ai|assistant|llm"
          r"|model|chatbot|bot|summari[sz]er|screener|agent)\b"),
)

# fmt: on

RULES: tuple[Rule, ...] = _OVERRIDE + _EXTRACTION + _JAILBREAK + _SMUGGLING
