"""Every user-facing phrase of the bot in both languages, by key: what the core tells the asker,
the escalation triggers' names, and what the adapters render around an answer and in the agents'
notices. Callers look a phrase up by key and language (`phrase`), or in both languages for a
mixed team's channel (`both`); a reply follows the asker's language (engine/text.py:detect).
"""

from __future__ import annotations

MESSAGES: dict[str, dict[str, str]] = {
    # -- the core's replies to the asker (engine/) --
    "empty": {
        "en": "Please write your question in words and I'll look it up.",
        "zh": "请用文字写下您的问题，我来帮您查找。",
    },
    "too_long": {
        "en": "Your message is too long ({size} characters; the limit is {limit}). "
        "Please shorten it or split it into smaller questions.",
        "zh": "您的消息太长了（{size} 个字符，上限 {limit}）。请精简或拆成几个小问题。",
    },
    "text_only": {
        "en": "I could not read the attachment, so there is nothing to answer yet — please "
        "type your question.",
        "zh": "附件没能读取，暂时无从回答，请直接输入您的问题。",
    },
    "attachment_question": {
        "en": "What is this, and what should I do about it?",
        "zh": "这是什么？我该怎么处理？",
    },
    "attachment_seen_image": {
        "en": "In the image {name} I read: {text}",
        "zh": "截图 {name} 中的文字：{text}",
    },
    "attachment_seen_file": {
        "en": "In {name} I read: {text}",
        "zh": "文件 {name} 的内容：{text}",
    },
    "attachment_unread": {
        "en": "⚠️ I could not read {name}: {reason}",
        "zh": "⚠️ 无法读取 {name}：{reason}",
    },
    "attachment_too_large": {
        "en": "it is too large ({size}; the limit is {limit}). Send a smaller file or the part "
        "that matters",
        "zh": "文件太大（{size}，上限 {limit}）。请发送较小的文件或相关的部分",
    },
    "attachment_too_many": {
        "en": "only the first {limit} attachments of a message are read",
        "zh": "每条消息只读取前 {limit} 个附件",
    },
    "attachment_off": {
        "en": "reading attachments is turned off here",
        "zh": "此处未开启附件读取",
    },
    "attachment_unavailable": {
        "en": "the platform did not give me a way to download it",
        "zh": "平台没有提供下载该文件的途径",
    },
    "attachment_slow": {
        "en": "the download took longer than {seconds} s. Try again in a moment",
        "zh": "下载超过 {seconds} 秒仍未完成，请稍后再试",
    },
    "attachment_read_slow": {
        "en": "reading it took longer than {seconds} s. Send a smaller file or fewer pages",
        "zh": "读取超过 {seconds} 秒仍未完成，请发送较小的文件或较少的页数",
    },
    "attachment_download": {
        "en": "the download failed ({reason})",
        "zh": "下载失败（{reason}）",
    },
    "attachment_encrypted": {
        "en": "it is password-protected. Send a copy without a password",
        "zh": "文件有密码保护，请发送不带密码的副本",
    },
    "attachment_no_text": {
        "en": "no text was found in it",
        "zh": "其中没有找到文字",
    },
    "attachment_unsupported": {
        "en": "this kind of file is not read ({detail}). Images (PNG, JPEG), PDF, Word .docx, "
        "Excel .xlsx, CSV, text and HTML are",
        "zh": "不支持此类文件（{detail}）。可读取图片（PNG、JPEG）、PDF、Word .docx、Excel .xlsx、"
        "CSV、文本和 HTML",
    },
    "attachment_too_many_pixels": {
        "en": "the image is too large to read ({detail})",
        "zh": "图片尺寸过大，无法读取（{detail}）",
    },
    "attachment_damaged": {
        "en": "the file seems damaged or is not what its name says ({detail})",
        "zh": "文件似乎已损坏或与其名称不符（{detail}）",
    },
    "no_knowledge": {
        "en": "I couldn't find anything about this in the knowledge base, so I won't guess. "
        "Try rephrasing, or ask a colleague who owns this topic.",
        "zh": "知识库里没有找到与此相关的内容，我就不乱猜了。可以换个说法再问，或请教负责该主题的同事。",
    },
    "retrieval_only": {
        "en": "⚠️ Retrieval-only answer: the language model is unavailable right now, "
        "so here are the most relevant passages from the knowledge base.",
        "zh": "⚠️ 仅检索结果：语言模型暂时不可用，以下是知识库中最相关的段落。",
    },
    "model_off": {
        "en": "No language model is set up here, so these are the most relevant passages "
        "from the knowledge base, as written.",
        "zh": "此处未配置语言模型，以下是知识库中最相关的原文段落。",
    },
    "cut_off": {
        "en": "⚠️ The answer was cut off: the model server stopped responding. "
        "Ask again in a moment.",
        "zh": "⚠️ 回答中断：模型服务没有继续响应，请稍后再问一次。",
    },
    "truncated": {
        "en": "⚠️ This answer is incomplete: it reached the model's length limit. "
        "Ask me to continue, or ask a narrower question.",
        "zh": "⚠️ 回答不完整：已达到模型的回答长度上限。可以让我继续，或把问题问得更具体些。",
    },
    "server_error": {
        "en": "⚠️ The answer stopped: the model server reported an error while writing it. "
        "Ask again in a moment.",
        "zh": "⚠️ 回答中断：模型服务在生成回答时报告了错误，请稍后再问一次。",
    },
    "server_full": {
        "en": "⚠️ The answer stopped: the model server ran out of room while answering several "
        "questions at once. Ask again in a moment.",
        "zh": "⚠️ 回答中断：模型服务同时处理的问题太多，空间不足。请稍后再问一次。",
    },
    "timed_out": {
        "en": "⚠️ The answer was stopped after {seconds:g} seconds, the time limit for one answer. "
        "Ask a narrower question, or ask again.",
        "zh": "⚠️ 回答已达到单次 {seconds:g} 秒的时限，已停止。可以把问题问得更具体些，或再问一次。",
    },
    "too_long_for_model": {
        "en": "Your question is too long for the language model to read at once (about {tokens} "
        "tokens with its context; it can take about {limit}). Please shorten it or split it "
        "into smaller questions.",
        "zh": "您的问题太长，语言模型一次读不完（连同参考资料约 {tokens} 个词元，上限约 {limit}）。"
        "请精简或拆成几个小问题。",
    },
    "escalated": {
        "en": "I've asked a colleague to help with this; a person will reply in this thread.",
        "zh": "已为您转接人工，同事会在此话题中回复您。",
    },
    "escalated_now": {
        "en": "I've asked a colleague to help with this; a person will reply in this thread, "
        "usually within {minutes} minutes.",
        "zh": "已为您转接人工，同事通常会在 {minutes} 分钟内在此话题中回复您。",
    },
    "escalated_later": {
        "en": "I've asked a colleague to help with this. It's outside business hours, so a person "
        "will reply in this thread from {when} ({zone}).",
        "zh": "已为您转接人工。现在是非工作时间，同事会在 {when}（{zone}）起在此话题中回复您。",
    },
    "resolved": {
        "en": "Marked as resolved. Ask again here any time and I'll pick it up.",
        "zh": "已标记为已解决。如有新问题，随时在此提问。",
    },
    "already_escalated": {
        "en": "A colleague has already been asked to help here.",
        "zh": "已经通知同事处理此话题。",
    },
    "rate_limited": {
        "en": "You're asking faster than I can keep up with — please wait a minute and ask again.",
        "zh": "您提问太快了，请稍等一分钟再问。",
    },
    "web_unavailable": {
        "en": "⚠️ The web search was unavailable, so this answer uses the knowledge base only.",
        "zh": "⚠️ 联网搜索暂时不可用，本回答仅基于知识库。",
    },
    "web_refused": {
        "en": "⚠️ The web results pointed to addresses I'm not allowed to open, "
        "so this answer uses the knowledge base only.",
        "zh": "⚠️ 搜索结果指向不允许访问的地址，本回答仅基于知识库。",
    },
    "web_off": {
        "en": "Web lookup is turned off in this chat, so this answer uses the knowledge base only.",
        "zh": "此群聊未开启联网搜索，本回答仅基于知识库。",
    },
    "thinking": {"en": "Looking it up…", "zh": "正在查找…"},
    "human_handling": {
        "en": "A person is handling this thread, so I'll stay quiet here.",
        "zh": "此话题已由人工处理，我先不回复了。",
    },
    "apology_failed": {
        "en": "Sorry — something went wrong while I was answering. Please ask again in a moment.",
        "zh": "抱歉，回答时出了点问题，请稍后再问一次。",
    },
    "apology_stopping": {
        "en": "Sorry — I had to restart while answering your question. Please ask it again.",
        "zh": "抱歉，我在回答您的问题时重启了，请再问一次。",
    },
    "apology_restarted": {
        "en": "Sorry — I restarted while answering your question. Please ask it again.",
        "zh": "抱歉，我在回答您的问题时重启了，请再问一次。",
    },
    # -- what the web chat's page is told when a request is refused (adapters/web/, bot/) --
    "web_bad_id": {"en": "Not a valid conversation id", "zh": "无效的对话编号"},
    "web_not_yours": {
        "en": "This conversation belongs to another browser session: start a new one.",
        "zh": "这个对话属于另一个浏览器会话，请开始新对话。",
    },
    "web_no_turn": {"en": "No such answer in your conversations", "zh": "没有这条回答"},
    "web_nothing_asked": {
        "en": "Ask a question first: a person needs something to answer.",
        "zh": "请先提一个问题，再转人工。",
    },
    "web_too_many_escalations": {
        "en": "Too many requests for a person: try again later.",
        "zh": "转人工请求过于频繁，请稍后再试。",
    },
    "web_starting": {"en": "teambot is starting: try again shortly", "zh": "正在启动，请稍候"},
    "web_json_only": {"en": "send the body as application/json", "zh": "请以 JSON 发送"},
    "web_json_too_deep": {
        "en": "JSON nested deeper than {depth} levels: not a chat message",
        "zh": "JSON 嵌套过深（超过 {depth} 层）",
    },
    "web_json_invalid": {"en": "the body is not valid JSON", "zh": "请求不是有效的 JSON"},
    "web_too_large": {
        "en": "request larger than {size} bytes ([webchat] max_body_bytes)",
        "zh": "请求过大（超过 {size} 字节）",
    },
    "web_failed": {
        "en": "Something went wrong; please ask again.",
        "zh": "出错了，请再问一次。",
    },
    "database_unavailable": {
        "en": "The service cannot reach its database right now; please try again in a moment.",
        "zh": "服务暂时无法访问数据库，请稍后再试。",
    },
    # -- escalation triggers, where a person reads them (notices, the console) --
    "trigger_asked_for_human": {"en": "asked for a person", "zh": "提问人要求转人工"},
    "trigger_no_grounding": {"en": "nothing in the knowledge base", "zh": "知识库中没有相关内容"},
    "trigger_negative_feedback": {"en": "marked not helpful", "zh": "提问人反馈没有帮助"},
    "trigger_model_failure": {"en": "the model server failed", "zh": "模型服务出错"},
    "trigger_unresolved_turns": {"en": "several turns unresolved", "zh": "多轮对话仍未解决"},
    "trigger_button": {"en": "clicked Talk to a person", "zh": "点击了转人工按钮"},
    # -- what the platform adapters render around an answer (adapters/<platform>/) --
    "sources": {"en": "Sources", "zh": "来源"},
    "button_helpful": {"en": "Helpful", "zh": "有帮助"},
    "button_person": {"en": "Talk to a person", "zh": "转人工"},
    "thanks_feedback": {"en": "Thanks for the feedback!", "zh": "感谢反馈！"},
    "asking_colleague": {"en": "Asking a colleague", "zh": "正在转人工"},
    "thinking_notice": {"en": "Thinking…", "zh": "正在思考…"},
    "hint_human": {
        "en": 'Reply "human" to reach a person (转人工)',
        "zh": "回复“转人工”可联系同事",
    },
    # -- the escalation notice in the agents' channel (read by a mixed team: both languages) --
    "notice_title": {"en": "A person is needed", "zh": "需要人工"},
    "notice_thread_needs": {"en": "a thread needs a person", "zh": "需要人工"},
    "notice_question": {"en": "Question", "zh": "问题"},
    "notice_asked_by": {"en": "Asked by", "zh": "提问人"},
    "notice_conversation": {"en": "Conversation", "zh": "会话"},
    "notice_trigger": {"en": "Trigger", "zh": "原因"},
    "notice_summary": {"en": "Summary", "zh": "对话摘要"},
    "notice_recent": {"en": "Recent turns", "zh": "最近对话"},
    "notice_open": {"en": "Open the conversation", "zh": "打开原会话"},
    "notice_open_thread": {"en": "Open the thread", "zh": "打开会话"},
}


def phrase(key: str, language: str, **values: object) -> str:
    """The phrase `key` in `language` ('zh' or 'en'; anything else is English), with `values`."""
    texts = MESSAGES[key]
    return texts.get(language, texts["en"]).format(**values)


def both(key: str, **values: object) -> str:
    """The phrase in both languages, Chinese first: "需要人工 / A person is needed"."""
    return f"{phrase(key, 'zh', **values)} / {phrase(key, 'en', **values)}"


def lines(key: str, **values: object) -> str:
    """The phrase in both languages on two lines, Chinese first: what a message posted to an
    asker whose language is unknown says (an apology after a crash)."""
    return f"{phrase(key, 'zh', **values)}\n{phrase(key, 'en', **values)}"
