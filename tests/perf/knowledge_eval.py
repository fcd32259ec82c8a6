"""The retrieval evaluation set over the bundled sample knowledge base: (question, document).

64 questions, 32 English and 32 Chinese, written by reading the sample files; each names the one
document that answers it. Off-topic questions (nothing in the sample answers them) calibrate the
relevance floor.
"""

from __future__ import annotations

VPN = "sample/vpn.md"
LEAVE = "sample/leave-policy.md"
PASSWORD = "sample/password-reset.md"
LAPTOP = "sample/laptop-and-printing.md"
ONBOARD = "sample/入职指南.md"
EXPENSE = "sample/报销流程.md"
FAQ = "sample/it-faq.csv"
SECURITY = "sample/security-training.html"

ENGLISH = [
    ("How do I reset my VPN profile?", VPN),
    ("What does VPN error GC-412 mean?", VPN),
    ("The VPN says certificate expired, what now?", VPN),
    ("What is the VPN gateway address?", VPN),
    ("When is VPN maintenance?", VPN),
    ("How long does a VPN session last before it disconnects?", VPN),
    ("How many days of annual leave do I get?", LEAVE),
    ("Can I carry unused vacation days into next year?", LEAVE),
    ("Do I need a doctor's note when I am sick?", LEAVE),
    ("How far in advance should I request two weeks off?", LEAVE),
    ("Who approves leave during the year-end freeze?", LEAVE),
    ("How often does my password expire?", PASSWORD),
    ("What are the password rules?", PASSWORD),
    ("I forgot my password and lost my phone", PASSWORD),
    ("How do I change a password I still know?", PASSWORD),
    ("My account is locked, what should I do?", PASSWORD),
    ("How do I print a document?", LAPTOP),
    ("Do stolen devices need a police report?", SECURITY),
    ("How do I connect to the office Wi-Fi?", LAPTOP),
    ("Can I get a new laptop because mine is broken?", LAPTOP),
    ("How do I get a second monitor?", FAQ),
    ("Can I install software on my laptop myself?", FAQ),
    ("How do I book a meeting room for 30 people?", FAQ),
    ("Who do I call when the helpdesk is closed at night?", FAQ),
    ("How can I share files with an external partner?", FAQ),
    ("How do I report a phishing email?", SECURITY),
    ("When must I finish the information security course?", SECURITY),
    ("What score do I need to pass the security quiz?", SECURITY),
    ("How do I submit an expense claim on expense.example.com?", EXPENSE),
    ("What is the hotel limit per night in Shanghai on a business trip?", EXPENSE),
    ("What should I do on my first day at the company?", ONBOARD),
    ("How long is the probation period?", ONBOARD),
]

CHINESE = [
    ("报销需要多少天内提交", EXPENSE),
    ("超过90天的费用还能报销吗", EXPENSE),
    ("出差住宿标准是多少", EXPENSE),
    ("发票抬头写什么", EXPENSE),
    ("报销单被退回了怎么办", EXPENSE),
    ("报销款多久到账", EXPENSE),
    ("业务招待费人均标准", EXPENSE),
    ("年度报销截止日是哪天", EXPENSE),
    ("出差补贴每天多少钱", EXPENSE),
    ("银行卡变了报销款会打到哪里", EXPENSE),
    ("新员工入职第一天要做什么", ONBOARD),
    ("入职需要准备哪些材料", ONBOARD),
    ("试用期多长时间", ONBOARD),
    ("核心工作时间是几点到几点", ONBOARD),
    ("在哪里领取笔记本电脑", ONBOARD),
    ("体检报告可以入职后补交吗", ONBOARD),
    ("入职后会收到哪些系统账号", ONBOARD),
    ("导师会带我做什么", ONBOARD),
    ("怎么申请第二台显示器", FAQ),
    ("可以自己安装软件吗", FAQ),
    ("怎么预订会议室", FAQ),
    ("晚上服务台下班了系统故障找谁", FAQ),
    ("怎么和外部合作伙伴共享文件", FAQ),
    ("打印机卡纸了怎么办", FAQ),
    ("访客连接哪个无线网络", FAQ),
    ("信息安全培训要在几天内完成", SECURITY),
    ("收到钓鱼邮件怎么办", SECURITY),
    ("笔记本电脑丢了怎么报告", SECURITY),
    ("安全培训测验多少分及格", SECURITY),
    ("设备被盗需要报警回执吗", SECURITY),
    ("首次登录新密码至少多少个字符", ONBOARD),
    ("差旅交通可以坐飞机商务舱吗", EXPENSE),
]

QUESTIONS = ENGLISH + CHINESE

OFF_TOPIC = [
    "What is a good recipe for lasagna?",
    "Who won the 1998 World Cup?",
    "What is the capital of Australia?",
    "Explain quantum entanglement simply",
    "Recommend a good science fiction novel",
    "How tall is Mount Everest?",
    "What's the weather like tomorrow?",
    "How do I train a puppy to sit?",
    "今天天气怎么样",
    "谁赢了昨天的足球比赛",
    "推荐一部好看的电影",
    "红烧肉怎么做",
    "珠穆朗玛峰有多高",
    "怎么学好英语口语",
    "明天股市会涨吗",
    "周末去哪里爬山比较好",
]
