"""The page's words in English and Chinese; the browser's language picks (gr.I18n)."""

from __future__ import annotations

EN = {
    "title": "# 🍒 Lychee reranker\nScore how well documents (text, images, or both) meet a query, with lychee-rerank-mm.",
    "demo_banner": (
        "⚠️ **Demo mode: the model has random weights.** The scores below are real outputs of a tiny random "
        "network and mean nothing about relevance. Start with `--model` pointing at lychee-rerank-mm for real scores."
    ),
    "instruction_preset": "Task preset",
    "instruction": "Instruction (editable)",
    "tab_single": "Single",
    "tab_batch": "Batch rerank",
    "tab_images": "Image ranking",
    "query_text": "Query text",
    "query_image": "Query image (optional)",
    "document_text": "Document text",
    "document_image": "Document image (optional)",
    "documents": "Documents: text blocks separated by a line ---",
    "documents_info": "Write [image: name.jpg] or [image: 2] in a block to attach an uploaded image to it; "
                      "images not attached are documents of their own.",
    "document_images": "Document images",
    "images": "Images to rank",
    "top_n": "Show the best N (0 = all)",
    "score_button": "Score",
    "rerank_button": "Rerank",
    "rank_button": "Rank images",
    "result": "Result",
    "ranking": "Ranking",
    "details": "Details (JSON)",
    "gallery": "Best first",
    "examples": "Examples",
    "tab_eval": "Evaluate",
    "eval_intro": "Upload a labelled set (JSON Lines: query, documents, relevant or labels; see `lychee eval --help`) "
                  "to see what reranking gains over the first-stage order.",
    "eval_data": "Labelled set (.jsonl)",
    "eval_images": "Its images (.zip, optional; paths in the file are relative to the zip's root)",
    "eval_k": "Cutoffs k",
    "eval_skip_bad": "Skip bad lines",
    "eval_button": "Evaluate",
    "eval_chart": "First stage vs. reranked",
    "model": "Model",
    "tab_compare": "Compare",
    "model_a": "Model A",
    "model_b": "Model B",
    "compare_button": "Compare",
}

ZH = {
    "title": "# 🍒 荔枝重排序\n用 lychee-rerank-mm 评估文档(文本、图片或图文)与查询的相关程度。",
    "demo_banner": (
        "⚠️ **演示模式:模型权重是随机的。** 下面的分数来自一个很小的随机网络,与相关性无关。"
        "使用 `--model` 指向 lychee-rerank-mm 才能得到真实分数。"
    ),
    "instruction_preset": "任务预设",
    "instruction": "指令(可编辑)",
    "tab_single": "单对评分",
    "tab_batch": "批量重排",
    "tab_images": "图片排序",
    "query_text": "查询文本",
    "query_image": "查询图片(可选)",
    "document_text": "文档文本",
    "document_image": "文档图片(可选)",
    "documents": "文档:文本块之间用单独一行 --- 分隔",
    "documents_info": "在文本块中写 [image: 文件名.jpg] 或 [image: 2] 可把上传的图片附到该文档;未附加的图片各自作为独立文档。",
    "document_images": "文档图片",
    "images": "待排序的图片",
    "top_n": "只显示前 N 个(0 = 全部)",
    "score_button": "评分",
    "rerank_button": "重排序",
    "rank_button": "图片排序",
    "result": "结果",
    "ranking": "排序结果",
    "details": "详细信息(JSON)",
    "gallery": "按相关度排序",
    "examples": "示例",
    "tab_eval": "评估",
    "eval_intro": "上传带标注的数据集(JSON Lines:query、documents、relevant 或 labels;见 `lychee eval --help`),"
                  "查看重排序相对初排顺序的提升。",
    "eval_data": "标注数据(.jsonl)",
    "eval_images": "图片(.zip,可选;文件中的路径相对于压缩包根目录)",
    "eval_k": "截断位置 k",
    "eval_skip_bad": "跳过有问题的行",
    "eval_button": "评估",
    "eval_chart": "初排 vs. 重排",
    "model": "模型",
    "tab_compare": "模型对比",
    "model_a": "模型 A",
    "model_b": "模型 B",
    "compare_button": "对比",
}

TRANSLATIONS = {"en": EN, "zh": ZH, "zh-CN": ZH, "zh-TW": ZH}
