"""The page's words in English and Chinese: the static page through gr.I18n, and what the handlers
write (tables, verdicts, errors, progress) through `text()` with the browser's language."""

from __future__ import annotations

# A table laid out by hand, one entry a row: the formatter leaves it as it is.
# fmt: off
EN = {
    "title": "# 🍒 Lychee reranker\nScore how well documents (text, images, or both) meet a query.",
    "swipe_hint": "↔ Swipe the table sideways to see every column.",
    "demo_banner": (
        "⚠️ **Demo mode: the models named random-… have random weights.** Their scores are real outputs of a tiny "
        "random network and mean nothing about relevance. Start with `--model` pointing at lychee-rerank-mm for real "
        "scores."
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
    "documents_info": "Write [image: name.jpg] or [image: 2] in a block to attach an uploaded image to it "
                      "([image: a.jpg, b.jpg] for several, [video: clip.mp4] for a clip); uploads not attached "
                      "are documents of their own.",
    "document_images": "Document images",
    "document_files": "Document images and clips",
    "document_more": "More document images, a clip, or a PDF",
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
    "eval_intro": "Upload a labelled set to see what reranking gains over the first-stage order. One JSON object "
                  "per line: `query`, `documents` (in first-stage order) and `relevant` (0-based positions of the "
                  "relevant documents) or graded `labels`; images as paths inside the zip. Download the sample "
                  "set below for the format.",
    "eval_data": "Labelled set (.jsonl)",
    "eval_images": "Its images (.zip, optional; paths in the file are relative to the zip's root)",
    "eval_k": "Cutoffs k",
    "eval_skip_bad": "Skip bad lines",
    "eval_button": "Evaluate",
    "eval_chart": "First stage vs. reranked",
    "eval_curves": "Precision and recall against the threshold",
    "model": "Model",
    "tab_compare": "Compare",
    "model_a": "Model A",
    "model_b": "Model B",
    "compare_button": "Compare",
    # choices and controls
    "preset_default": "Model default",
    "preset_custom": "Custom (edited)",
    "preset_web": "Web search",
    "preset_ecommerce": "E-commerce",
    "preset_product": "Product search",
    "preset_academic": "Academic figures",
    "preset_education": "Education",
    "preset_design": "Design assets",
    "stop_button": "Stop",
    "min_score": "Hide scores below",
    "downloads": "Download the results (CSV, JSON)",
    "uploaded_images": "Uploaded images",
    "sample_download": "Download the sample set (.jsonl and images .zip)",
    "shortcut_hint": "Ctrl+Enter (⌘+Enter) runs the open tab.",
    "example_single": "☕ Mountain-pattern cup: text query, text + image document",
    "example_batch_photo": "☕ Cup photo vs. 10 product descriptions",
    "example_batch_text": "🥤 保温杯 500ml, top 3",
    "example_images": "🖼 Six product drawings vs. 'a white cup with a mountain line pattern'",
    "example_compare": "🥤 保温杯 500ml vs. 10 product descriptions",
    "example_eval": "🔷 Shapes, colours and cups (sample set)",
    "why_title": "Why this score?",
    "why_intro": "Each image of the pair as a heatmap: a cell's value is the score minus the score with that cell "
                 "painted in the image's mean colour (green: the cell made the document more relevant; pink: less). "
                 "Each text word by word: the score minus the score without that word. Exact for this model; "
                 "the model's own words, when asked for, can be wrong.",
    "why_query_map": "Query image: heatmap",
    "why_document_map": "Document image: heatmap",
    "why_query_map_n": "Query image {number}: heatmap",
    "why_document_map_n": "Document image {number}: heatmap",
    "why_maps": "Heatmaps",
    "why_button": "Why this score?",
    "why_grid": "Cells per side",
    "why_ask": "Also ask the model why (its own words, slower)",
    "why_pick_image": "Click a result to see why it scored what it did.",
    "why_choose": "Why? Choose a result",
    "why_choose_both": "Why? Choose a document (both models)",
    "tab_search": "Search", "collection": "Collection", "search_button": "Search",
    "search_top_k": "First stage: nearest items", "search_rerank_top_n": "Reranked: the first N",
    "search_first_order": "Show the first stage's own order", "search_first_score": "first stage",
    "search_reranked_as": "reranked #{rank}", "search_not_reranked": "not reranked",
    "search_first_stage_was": "first stage #{rank} ({score:.3f})",
    "index_title": "Add files to a collection", "index_files": "Images, PDFs, texts (.txt, .md) and clips",
    "index_intro": "Name a collection above (a new name makes one). Each file is embedded once: the same file sent "
                   "again is skipped. The files are kept with the collection, on this server.",
    "index_button": "Index the files",
    "index_done": "**{collection}**: {embedded} embedded, {unchanged} already there.",
    "error_collection_missing": "Choose a collection first (or index files into a new one below).",
    "search_eval_title": "Evaluate this search (labelled queries)",
    "search_eval_intro": "What the reranker adds to this collection's search: Recall, NDCG and MRR of the first stage "
                         "and after reranking. One JSON object per line: `{\"query\": \"a white cup\", \"relevant\": "
                         "[\"photos/cup.png\", \"paper.pdf#page=3\"]}` (the collection's paths, as results show them), or "
                         "graded `\"labels\": {\"photos/cup.png\": 2}`.",
    "search_eval_button": "Evaluate the search",
}
# fmt: on

# What the handlers write, in the browser's language (`text(key, language, ...)`).
# A table laid out by hand, one entry a row: the formatter leaves it as it is.
# fmt: off
EN_OUTPUT = {
    "served": "Scoring with **{model}** ({family}){random}.", "served_random": ", random weights",
    "why_query_image": "Query image", "why_document_image": "Document image", "why_query_text": "Query text",
    "why_document_text": "Document text", "why_lowers": "lowered the score", "why_raises": "raised it",
    "why_legend": "colour scale", "why_texts": "Texts, word by word", "why_raw": "Raw output", "why_mass": "share of yes+no",
    "why_low_mass": "The model put little probability on yes or no: it wanted to say something else, so read the "
                    "score with care.",
    "why_token": "likeliest next token", "why_probability": "probability",
    "why_words": "The model's own words (they can be wrong):",
    "why_timeline": "The clip, second by second (each sampled frame pair left out)",
    "why_seconds": "seconds",
    "why_how": "From {variants} changed pairs, each scored by this model.",
    "col_rank": "Rank", "col_score": "Score", "col_document": "Document", "col_input": "Input #",
    "col_move": "Move", "col_metric": "Metric", "col_first_stage": "First stage", "col_reranked": "Reranked",
    "col_change": "Change", "col_change_of": "Change ({name})", "col_model_rank": "{name} rank",
    "verdict_green": "highly relevant", "verdict_yellow": "partly relevant", "verdict_red": "not relevant",
    "hidden_below": "{count} more below {threshold:.2f} hidden",
    "nothing_above": "No document scores {threshold:.2f} or more ({count} hidden).",
    "hidden_band": "{count} more below \"{band}\" hidden", "nothing_in_band": "No document is \"{band}\" ({count} hidden).",
    "band_relevant": "highly relevant", "band_partly": "partly relevant or better",
    "legend": "{green} ≥ {show:.2f} · {yellow} {below:.2f}–{show:.2f} · {red} < {below:.2f}",
    "legend_default": "default bands (calibrate them on your own labels: lychee eval --calibrate)",
    "legend_calibrated": "{kind}: calibrated on {pairs} labelled pairs",
    "col_model": "Model", "col_pair": "Query → document", "col_pairs": "Labelled pairs", "col_relevant": "Relevant",
    "col_show_first": "show first at", "col_filter_below": "filter below", "curve_precision": "precision",
    "curve_recall": "recall", "too_few_labels": "too few labels ({pairs} pairs, {relevant} relevant)",
    "no_precision": "no threshold keeps the pairs above it relevant {precision:.0%} of the time",
    "calibration_intro": "**Thresholds from these labels** (download calibration.json; `lychee load --calibration "
    "calibration.json` colours and filters by them): *show first at* keeps the pairs above it relevant at least "
    "{precision:.0%} of the time; *filter below* drops at most {missed:.0%} of the relevant pairs.",
    "eval_queries": "{count} queries", "eval_no_relevant": "{count} with no relevant document (they score 0)",
    "eval_skipped": "{count} lines skipped",
    "chart_x": "Metric at k", "chart_y": "Score", "chart_stage": "Stage", "stage_first": "first stage",
    "stage_reranked": "reranked",
    "progress_reading": "reading image {done}/{total}", "progress_scoring": "scoring {done}/{total}",
    "progress_preparing": "preparing image {done}/{total}",
    "stopped_after": "Stopped after {done} of {total}: the ranking shows those scored, ranked among themselves.",
    "stopped_title": "Stopped", "error_title": "Error",
    "pdf_page": "{name}, p. {page}",
    "part_page": "p. {page} of {count}",
    "part_chunk": "characters {start}–{end} (chunk {number} of {count})",
    "part_segment": "{start}–{end} s (segment {number} of {count})",
    "best_part": "Best part",
    "progress_query": "scoring query {done}/{total}",
    "kendall": "Kendall's tau", "overlap": "top-{k} overlap", "disagree": "Where they disagree most",
    "rank_vs": "rank {a} vs {b}",
    # errors
    "error_query_missing": "Query: give a query text, a query image, or both.",
    "error_document_missing": "Document: give a document text, a document image, or both.",
    "error_documents_missing": "Documents: give at least one text block or image.",
    "error_images_missing": "Images to rank: upload at least one image.",
    "error_data_missing": "Labelled set: upload a .jsonl file.",
    "error_query_image": "Query image ({name}): {reason}",
    "error_query": "Query: {reason}",
    "error_single_document": "Document: {reason}",
    "error_document_image": "Document image ({name}): {reason}",
    "error_document": "Document {number}{name}: {reason}",
    "error_image": "Images to rank, image {number} ({name}): {reason}",
    "error_too_many": "{what}: {count} given, at most {limit} per request on this server.",
    "what_documents": "Documents", "what_images": "Images to rank",
    "error_attach_missing": "[{kind}: {reference}] matches no uploaded file (uploaded: {uploaded})",
    "error_one_video": "attach at most one video to a document",
    "error_one_pdf": "attach at most one PDF to a document",
    "unreadable_reason": "not an image this app can read (PNG, JPEG, WebP, GIF, BMP, TIFF …)",
    "error_upload_one": "{box} ({name}): {reason}", "error_upload_many": "{box}, image {number} ({name}): {reason}",
    "error_top_n": "Show the best N: give a whole number, 0 or more (0 shows all).",
    "error_min_score": "Hide scores below: give a number from 0 to 1, \"relevant\" or \"partly\", got {value}.",
    "error_k": "Cutoffs k: give whole numbers of 1 or more separated by commas, like 1,5,10.",
    "error_timeout": "This run took longer than this server's limit of {seconds:g} s ({stage}) and was stopped. "
                     "Try fewer documents or smaller images.",
    "stage_reading": "while reading its images",
    "stage_scoring": "while scoring",
    "error_busy": "Every model replica is busy; try again in a few seconds.",
    "error_out_of_memory": "Out of GPU memory even for a single pair: use smaller images (max_pixels) or shorter texts.",
    "error_stopped": "Stopped.",
    "stopped_before": "Stopped before scoring began: nothing was scored.",
    "error_eval_line": "Labelled set, line {line}: {reason}",
    "error_eval_all_skipped": "Every one of the {count} lines was skipped, so there is nothing to evaluate. "
                              "The first problem, line {line}: {reason}",
    "error_eval_empty": "Labelled set: the file has no query to evaluate (it is empty).",
    "hint_eval_zip": " The set names images: upload its images .zip too.",
    "error_zip": "Images zip: {reason}",
    "error_bad_arguments": "The request's values could not be read; check the inputs: {inputs}.",
    "error_not_uploaded": "{input}: this file was not uploaded to this server. Upload the file itself "
                          "(gradio_client: handle_file(path)); server paths and URLs are not read.",
}
# fmt: on

# A table laid out by hand, one entry a row: the formatter leaves it as it is.
# fmt: off
ZH_EXTRA = {
    "preset_default": "模型默认",
    "preset_custom": "自定义(已编辑)",
    "preset_web": "网页搜索",
    "preset_ecommerce": "电商",
    "preset_product": "商品搜索",
    "preset_academic": "学术图表",
    "preset_education": "教育",
    "preset_design": "设计素材",
    "stop_button": "停止",
    "min_score": "隐藏低于此分数的结果",
    "downloads": "下载结果(CSV、JSON)",
    "uploaded_images": "已上传的图片",
    "sample_download": "下载示例数据(.jsonl 与图片 .zip)",
    "shortcut_hint": "Ctrl+Enter(⌘+Enter)运行当前标签页。",
    "example_single": "☕ 山形图案杯:文本查询,图文文档",
    "example_batch_photo": "☕ 杯子照片 vs. 10 条商品描述",
    "example_batch_text": "🥤 保温杯 500ml,前 3 名",
    "example_images": "🖼 六张商品图 vs.「白色山形线条图案的杯子」",
    "example_compare": "🥤 保温杯 500ml vs. 10 条商品描述",
    "example_eval": "🔷 形状、颜色与杯子(示例数据)",
    "why_title": "为什么是这个分数?",
    "why_intro": "图片以热力图显示:每个格子的值是原分数减去把该格子涂成图片平均颜色后的分数(绿色:该区域让文档更相关;"
                 "粉色:更不相关)。文本逐词显示:原分数减去删去该词后的分数。这些数值对本模型是精确的;"
                 "模型自己的解释(如果要求)可能有误。",
    "why_query_map": "查询图片:热力图",
    "why_document_map": "文档图片:热力图",
    "why_query_map_n": "查询图片 {number}:热力图",
    "why_document_map_n": "文档图片 {number}:热力图",
    "why_maps": "热力图",
    "why_button": "为什么是这个分数?",
    "why_grid": "每边格数",
    "why_ask": "同时让模型说明理由(模型自己的话,较慢)",
    "why_pick_image": "点击一个结果,查看它为何得到这个分数。",
    "why_choose": "为什么?选择一个结果",
    "why_choose_both": "为什么?选择一个文档(两个模型)",
}
# fmt: on

# A table laid out by hand, one entry a row: the formatter leaves it as it is.
# fmt: off
ZH_OUTPUT = {
    "served": "当前模型:**{model}**({family}){random}。", "served_random": ",随机权重",
    "why_query_image": "查询图片", "why_document_image": "文档图片", "why_query_text": "查询文本",
    "why_document_text": "文档文本", "why_lowers": "降低了分数", "why_raises": "提高了分数",
    "why_legend": "颜色刻度", "why_texts": "文本(逐词)", "why_raw": "原始输出", "why_mass": "yes+no 概率占比",
    "why_low_mass": "模型给 yes 或 no 的概率很低:它本想说别的内容,请谨慎看待这个分数。",
    "why_token": "最可能的下一个词元", "why_probability": "概率",
    "why_words": "模型自己的话(可能有误):",
    "why_timeline": "视频逐秒(每次去掉一对采样帧)",
    "why_seconds": "秒",
    "why_how": "基于 {variants} 个改动后的文档对,每个都由本模型评分。",
    "col_rank": "排名", "col_score": "分数", "col_document": "文档", "col_input": "输入序号",
    "col_move": "变化", "col_metric": "指标", "col_first_stage": "初排", "col_reranked": "重排后",
    "col_change": "提升", "col_change_of": "提升({name})", "col_model_rank": "{name} 排名",
    "verdict_green": "高度相关", "verdict_yellow": "部分相关", "verdict_red": "不相关",
    "hidden_below": "另有 {count} 个低于 {threshold:.2f} 的结果已隐藏",
    "nothing_above": "没有分数达到 {threshold:.2f} 的文档(已隐藏 {count} 个)。",
    "hidden_band": "另有 {count} 个未达到“{band}”的结果已隐藏", "nothing_in_band": "没有“{band}”的文档(已隐藏 {count} 个)。",
    "band_relevant": "高度相关", "band_partly": "部分相关及以上",
    "legend": "{green} ≥ {show:.2f} · {yellow} {below:.2f}–{show:.2f} · {red} < {below:.2f}",
    "legend_default": "默认阈值(可用自己的标注校准:lychee eval --calibrate)",
    "legend_calibrated": "{kind}:基于 {pairs} 个标注对校准",
    "col_model": "模型", "col_pair": "查询 → 文档", "col_pairs": "标注对", "col_relevant": "相关",
    "col_show_first": "优先展示阈值", "col_filter_below": "过滤阈值", "curve_precision": "精确率",
    "curve_recall": "召回率", "too_few_labels": "标注太少({pairs} 对,{relevant} 个相关)",
    "no_precision": "没有阈值能使其上的文档对达到 {precision:.0%} 相关",
    "calibration_intro": "**由这些标注得到的阈值**(下载 calibration.json;`lychee load --calibration "
    "calibration.json` 按它着色和过滤):高于*优先展示阈值*的文档对至少 {precision:.0%} 相关;低于*过滤阈值*"
    "被过滤的相关文档对至多 {missed:.0%}。",
    "eval_queries": "{count} 个查询", "eval_no_relevant": "其中 {count} 个没有相关文档(记为 0 分)",
    "eval_skipped": "跳过 {count} 行",
    "chart_x": "指标 @k", "chart_y": "分数", "chart_stage": "阶段", "stage_first": "初排", "stage_reranked": "重排后",
    "progress_reading": "读取图片 {done}/{total}", "progress_scoring": "评分 {done}/{total}",
    "progress_preparing": "处理图片 {done}/{total}",
    "stopped_after": "已在 {total} 个中评完 {done} 个后停止:下面只列出已评分的,并在它们之间排序。",
    "stopped_title": "已停止", "error_title": "错误",
    "pdf_page": "{name} 第 {page} 页",
    "part_page": "第 {page} 页(共 {count} 页)",
    "part_chunk": "第 {start}–{end} 个字符(第 {number} 块,共 {count} 块)",
    "part_segment": "{start}–{end} 秒(第 {number} 段,共 {count} 段)",
    "best_part": "最佳部分",
    "progress_query": "评估查询 {done}/{total}",
    "kendall": "Kendall tau 相关系数", "overlap": "前 {k} 名重合率", "disagree": "分歧最大的文档",
    "rank_vs": "排名 {a} 对 {b}",
    "error_query_missing": "查询:请输入查询文本或上传查询图片(或两者都给)。",
    "error_document_missing": "文档:请输入文档文本或上传文档图片(或两者都给)。",
    "error_documents_missing": "文档:请至少给出一个文本块或一张图片。",
    "error_images_missing": "待排序的图片:请至少上传一张图片。",
    "error_data_missing": "标注数据:请上传 .jsonl 文件。",
    "error_query_image": "查询图片({name}):{reason}",
    "error_query": "查询:{reason}",
    "error_single_document": "文档:{reason}",
    "error_document_image": "文档图片({name}):{reason}",
    "error_document": "文档 {number}{name}:{reason}",
    "error_image": "待排序的图片,第 {number} 张({name}):{reason}",
    "error_too_many": "{what}:给出了 {count} 个,本服务器每次请求最多 {limit} 个。",
    "what_documents": "文档", "what_images": "待排序的图片",
    "error_attach_missing": "[{kind}: {reference}] 与已上传的文件都不匹配(已上传:{uploaded})",
    "error_one_video": "每个文档最多附加一个视频",
    "error_one_pdf": "每个文档最多附加一个 PDF",
    "unreadable_reason": "不是本应用能读取的图片(PNG、JPEG、WebP、GIF、BMP、TIFF……)",
    "error_upload_one": "{box}({name}):{reason}", "error_upload_many": "{box},第 {number} 张({name}):{reason}",
    "error_top_n": "只显示前 N 个:请输入 0 或正整数(0 表示全部)。",
    "error_min_score": "隐藏低于此分数的结果:请给出 0 到 1 之间的数、\"relevant\" 或 \"partly\",收到 {value}。",
    "error_k": "截断位置 k:请输入以逗号分隔的正整数,例如 1,5,10。",
    "error_timeout": "本次运行超过了服务器 {seconds:g} 秒的时限({stage}),已停止。请减少文档数量或使用更小的图片。",
    "stage_reading": "读取图片时",
    "stage_scoring": "打分时",
    "error_busy": "所有模型副本都在忙,请几秒后重试。",
    "error_out_of_memory": "显存不足,连单个文档对都放不下:请使用更小的图片(max_pixels)或更短的文本。",
    "error_stopped": "已停止。",
    "stopped_before": "在开始打分前已停止:没有打分。",
    "error_eval_line": "标注数据第 {line} 行:{reason}",
    "error_eval_all_skipped": "{count} 行全部被跳过,没有可评估的内容。第一个问题在第 {line} 行:{reason}",
    "error_eval_empty": "标注数据:文件中没有可评估的查询(文件为空)。",
    "hint_eval_zip": " 该数据集引用了图片:请同时上传它的图片压缩包。",
    "error_zip": "图片压缩包:{reason}",
    "error_bad_arguments": "无法读取请求中的值,请检查这些输入:{inputs}。",
    "error_not_uploaded": "{input}:该文件不是上传到本服务器的文件。请上传文件本身(gradio_client:handle_file(path));"
                          "服务器路径和网址不会被读取。",
}
# fmt: on

# A table laid out by hand, one entry a row: the formatter leaves it as it is.
# fmt: off
ZH = {
    "title": "# 🍒 荔枝重排序\n评估文档(文本、图片或图文)与查询的相关程度。",
    "swipe_hint": "↔ 左右滑动表格可查看所有列。",
    "demo_banner": (
        "⚠️ **演示模式:名为 random-… 的模型权重是随机的。** 它们的分数来自一个很小的随机网络,与相关性无关。"
        "使用 `--model` 指向 lychee-rerank-mm 才能得到真实分数。"
    ),
    "instruction_preset": "任务预设",
    "instruction": "指令(可编辑;这是模型的英文提示词,保持英文效果最好)",
    "tab_single": "单对评分",
    "tab_batch": "批量重排",
    "tab_images": "图片排序",
    "query_text": "查询文本",
    "query_image": "查询图片(可选)",
    "document_text": "文档文本",
    "document_image": "文档图片(可选)",
    "documents": "文档:文本块之间用单独一行 --- 分隔",
    "documents_info": ("在文本块中写 [image: 文件名.jpg] 或 [image: 2] 可把上传的图片附到该文档"
                       "([image: a.jpg, b.jpg] 附多张,[video: 视频.mp4] 附视频);未附加的文件各自作为独立文档。"),
    "document_images": "文档图片",
    "document_files": "文档图片与视频",
    "document_more": "更多文档图片、一个视频或一个 PDF",
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
    "eval_intro": "上传带标注的数据集,查看重排序相对初排顺序的提升。每行一个 JSON 对象:`query`、`documents`"
                  "(按初排顺序)以及 `relevant`(相关文档的位置,从 0 开始)或分级的 `labels`;图片写成压缩包内的路径。"
                  "格式可参考下方的示例数据。",
    "eval_data": "标注数据(.jsonl)",
    "eval_images": "图片(.zip,可选;文件中的路径相对于压缩包根目录)",
    "eval_k": "截断位置 k",
    "eval_skip_bad": "跳过有问题的行",
    "eval_button": "评估",
    "eval_chart": "初排 vs. 重排",
    "eval_curves": "精确率与召回率随阈值的变化",
    "model": "模型",
    "tab_compare": "模型对比",
    "model_a": "模型 A",
    "model_b": "模型 B",
    "compare_button": "对比",
    "tab_search": "搜索", "collection": "集合", "search_button": "搜索",
    "search_top_k": "第一阶段:最近的条目数", "search_rerank_top_n": "重排:前 N 个",
    "search_first_order": "显示第一阶段自己的顺序", "search_first_score": "第一阶段",
    "search_reranked_as": "重排第 {rank}", "search_not_reranked": "未重排",
    "search_first_stage_was": "第一阶段第 {rank}({score:.3f})",
    "index_title": "向集合添加文件", "index_files": "图片、PDF、文本(.txt、.md)和视频",
    "index_intro": "在上方填写集合名称(新名称即新建集合)。每个文件只生成一次向量:再次发送同一文件会被跳过。"
                   "文件随集合保存在本服务器上。",
    "index_button": "索引这些文件",
    "index_done": "**{collection}**:新生成 {embedded} 个,已有 {unchanged} 个。",
    "error_collection_missing": "请先选择一个集合(或在下方把文件索引到新集合)。",
    "search_eval_title": "评估这个搜索(带标注的查询)",
    "search_eval_intro": "重排为这个集合的搜索带来了什么:第一阶段与重排后的召回率、NDCG 和 MRR。每行一个 JSON 对象:"
                         "`{\"query\": \"白色杯子\", \"relevant\": [\"photos/cup.png\", \"paper.pdf#page=3\"]}`"
                         "(集合中的路径,与结果所示相同),或分级的 `\"labels\": {\"photos/cup.png\": 2}`。",
    "search_eval_button": "评估搜索",
}
# fmt: on

ZH.update(ZH_EXTRA)

# The static page's words, for gr.I18n (the browser picks).
TRANSLATIONS = {"en": EN, "zh": ZH, "zh-CN": ZH, "zh-TW": ZH}

_OUTPUT = {"en": {**EN, **EN_OUTPUT}, "zh": {**ZH, **ZH_OUTPUT}}


def language(accept_language: str | None) -> str:
    """ "zh" when the browser's first preferred language is Chinese, else "en" (gradio_client sends none)."""
    first = (accept_language or "").split(",")[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"


def text(key: str, lang: str = "en", **values) -> str:
    """One of the page's words in `lang` ("en" or "zh"), with `values` filled in."""
    table = _OUTPUT.get(lang, _OUTPUT["en"])
    template = table.get(key, _OUTPUT["en"][key])
    return template.format(**values) if values else template
