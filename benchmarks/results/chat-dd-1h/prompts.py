import sys
sys.path.insert(0, "benchmarks")
from chat import PROMPTS
from translator.inference.chatbot import Chatbot
F, B = sys.argv[1], sys.argv[2]
bot = Chatbot.from_checkpoint(F, backward=B)
base = bot.default_decoding
for gamma in map(float, sys.argv[3:]):
    for beta in (0.0, 1.0):
        cfg = base.replace(length_bonus=gamma, backward_weight=beta)
        print(f"## gamma={gamma} beta={beta}")
        for m in PROMPTS["dailydialog"]:
            print(f"{m} -> {bot.reply([], m, cfg)}")
