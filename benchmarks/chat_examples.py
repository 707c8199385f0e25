"""Five example exchanges with a chat checkpoint: python benchmarks/chat_examples.py CKPT ko|en"""
import sys
from translator.inference import Chatbot
ckpt, lang = sys.argv[1], sys.argv[2]
bot = Chatbot.from_checkpoint(ckpt)
msgs = {"ko": ["안녕하세요", "오늘 너무 피곤해", "여자친구랑 헤어졌어", "주말에 뭐 하지?", "배고파"],
        "en": ["Hi, how are you doing today?", "Do you want to go to the movies tonight?",
               "I lost my wallet on the bus.", "What time does the store open?", "Thank you so much for your help!"]}[lang]
for decoder in ("beam", "sample"):
    print(f"--- {decoder}")
    for m in msgs:
        print(f"> {m}\n< {bot.reply([], m, decoder=decoder, seed=0)}")
