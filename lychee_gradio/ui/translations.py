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
    "why_button": "Why this score?",
    "why_grid": "Cells per side",
    "why_ask": "Also ask the model why (its own words, slower)",
    "why_pick_image": "Click a result to see why it scored what it did.",
    "why_choose": "Why? Choose a result",
    "why_choose_both": "Why? Choose a document (both models)",
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
    "eval_queries": "{count} queries", "eval_no_relevant": "{count} with no relevant document (they score 0)",
    "eval_skipped": "{count} lines skipped",
    "chart_x": "Metric at k", "chart_y": "Score", "chart_stage": "Stage", "stage_first": "first stage",
    "stage_reranked": "reranked",
    "progress_reading": "reading image {done}/{total}", "progress_scoring": "scoring {done}/{total}",
    "progress_preparing": "preparing image {done}/{total}",
    "stopped_after": "Stopped after {done} of {total}: the ranking shows those scored, ranked among themselves.",
    "stopped_title": "Stopped", "error_title": "Error",
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
    "error_attach_missing": "[image: {reference}] matches no uploaded image (uploaded: {uploaded})",
    "error_one_video": "attach at most one video to a document",
    "unreadable_reason": "not an image this app can read (PNG, JPEG, WebP, GIF, BMP, TIFF …)",
    "error_upload_one": "{box} ({name}): {reason}", "error_upload_many": "{box}, image {number} ({name}): {reason}",
    "error_top_n": "Show the best N: give a whole number, 0 or more (0 shows all).",
    "error_min_score": "Hide scores below: give a number from 0 to 1, got {value}.",
    "error_k": "Cutoffs k: give whole numbers of 1 or more separated by commas, like 1,5,10.",
    "error_timeout": "This run took longer than this server's limit of {seconds:g} s and was stopped. Try fewer "
                     "documents or smaller images.",
    "error_busy": "Every model replica is busy; try again in a few seconds.",
    "error_out_of_memory": "Out of GPU memory even for a single pair: use smaller images (max_pixels) or shorter texts.",
    "error_stopped": "Stopped.",
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
    "eval_queries": "{count} 个查询", "eval_no_relevant": "其中 {count} 个没有相关文档(记为 0 分)",
    "eval_skipped": "跳过 {count} 行",
    "chart_x": "指标 @k", "chart_y": "分数", "chart_stage": "阶段", "stage_first": "初排", "stage_reranked": "重排后",
    "progress_reading": "读取图片 {done}/{total}", "progress_scoring": "评分 {done}/{total}",
    "progress_preparing": "处理图片 {done}/{total}",
    "stopped_after": "已在 {total} 个中评完 {done} 个后停止:下面只列出已评分的,并在它们之间排序。",
    "stopped_title": "已停止", "error_title": "错误",
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
    "error_attach_missing": "[image: {reference}] 与已上传的图片都不匹配(已上传:{uploaded})",
    "error_one_video": "每个文档最多附加一个视频",
    "unreadable_reason": "不是本应用能读取的图片(PNG、JPEG、WebP、GIF、BMP、TIFF……)",
    "error_upload_one": "{box}({name}):{reason}", "error_upload_many": "{box},第 {number} 张({name}):{reason}",
    "error_top_n": "只显示前 N 个:请输入 0 或正整数(0 表示全部)。",
    "error_min_score": "隐藏低于此分数的结果:请给出 0 到 1 之间的数,收到 {value}。",
    "error_k": "截断位置 k:请输入以逗号分隔的正整数,例如 1,5,10。",
    "error_timeout": "本次运行超过了服务器 {seconds:g} 秒的时限,已停止。请减少文档数量或使用更小的图片。",
    "error_busy": "所有模型副本都在忙,请几秒后重试。",
    "error_out_of_memory": "显存不足,连单个文档对都放不下:请使用更小的图片(max_pixels)或更短的文本。",
    "error_stopped": "已停止。",
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
    "instruction": "指令(可编辑)",
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
    "model": "模型",
    "tab_compare": "模型对比",
    "model_a": "模型 A",
    "model_b": "模型 B",
    "compare_button": "对比",
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


# The input errors (contract.ERRORS, by code) in Chinese; English comes from the contract itself.
# A table laid out by hand, one entry a row: the formatter leaves it as it is.
# fmt: off
ERRORS_ZH = {
    "missing": "缺失(收到 None);请给出文本、图片或两者",
    "empty": "为空(没有文本也没有图片)",
    "unsupported_type": "不支持的类型 {type};请给出字符串、PIL 图片、路径、字节,或含 text 和/或 image 的字典",
    "unknown_keys": "未知的键 {keys};请使用 text 和/或 image(可选 id、metadata)",
    "expected_string": "应为字符串,收到 {type}",
    "expected_list": "应为文档列表,收到 {type}",
    "not_unicode": "不是有效的 Unicode 文本(第 {position} 个字符是孤立代理项)",
    "image_type": "不支持的图片类型 {type};请给出 PIL 图片、文件路径、字节、base64 字符串或 data URL",
    "image_empty_string": "图片是空字符串",
    "image_url_library": "不会下载图片网址({url});请先下载图片再传入",
    "base64_invalid": "无效的 base64 图片数据({reason})",
    "image_not_found": "找不到图片文件:{path}",
    "image_not_a_file": "不是文件:{path}",
    "image_unreadable": "无法读取图片文件 {path}:{reason}",
    "image_empty": "文件为空",
    "image_decode": "无法解码该图片({reason})",
    "image_unidentified": "无法解码该图片(不是 JPEG、PNG、WebP、GIF、BMP 或 TIFF)",
    "image_aspect": "图片为 {width}x{height}:长边超过短边的 {limit} 倍,模型无法处理;请裁剪或填充",
    "image_bomb": "图片过大,无法安全解码",
    "image_no_pixels": "图片没有像素",
    "image_pixels": "图片为 {width}x{height} = {pixels:,} 像素,超过本服务器上限 {limit:,}",
    "request_pixels": "本次请求的图片解码后合计超过本服务器 {limit:,} 像素的上限,请减少图片数量或使用更小的图片",
    "too_many": "给出了 {count} 个,本服务器每次请求最多 {limit} 个",
    "top_n": "应为 0(全部)或正整数,收到 {value}",
    "max_pixels_low": "至少为 {minimum},收到 {value}",
    "max_pixels_high": "本服务器最多 {limit}",
    "unknown_model": "未知模型 {name};本服务器提供 {served}",
    "image_value": "图片必须是非空字符串(data URL 或 base64)",
    "image_urls_off": "本服务器不下载图片网址(用 --allow-image-urls 启动,或以 base64 发送图片)",
    "file_path_http": "通过 HTTP 不读取文件路径;请以 base64 或 data URL 发送图片",
    "not_image_data": "不是 data URL 或 base64 图片(通过 HTTP 不读取文件路径)",
    "url_not_fetched": "无法获取该图片网址(本服务器只在 {timeout:g} 秒内获取公网 http(s) 地址;请改以 base64 发送)",
    "url_too_large": "网址上的图片超过本服务器 {limit:,} 字节的上限",
    "expected_string_or_object": "应为字符串或对象,收到 {type}",
    "object_keys": "对象需要 text 和/或 image(或 content)",
    "content_list": "应为内容部分的列表",
    "content_part": ("应为 {{type: text, text}}、{{type: image_url, image_url: {{url}}}} 或 "
                     "{{type: video_url, video_url: {{url}}}}"),
    "video_empty": "视频数据为空",
    "video_bytes": "视频超过本服务器的上限 {limit:,} 字节",
    "video_not_found": "找不到视频文件:{path}",
    "video_type": "不支持的视频类型 {type};请给出路径、字节、base64 或 data URL",
    "video_unavailable": "服务器需要 PyAV 才能读取视频(pip install av)",
    "video_container": "不是本服务器能读取的视频:请发送 MP4/MOV、WebM/Matroska 或 AVI 文件",
    "video_no_size": "视频文件头没有标明画面尺寸",
    "video_frame_size": "视频中有一帧为 {width}x{height},大于文件头标明的 {stated}",
    "video_value": "视频必须是非空字符串:MP4、WebM 或 AVI 文件的 data URL 或 base64",
    "no_video_slot": "模型 {model} 不接受视频(其对话模板没有视频位置);请发送图片",
    "request_memory": ("本次请求的图片和视频解码后约需 {need_mb:,} MB,超过本服务器 {limit_mb:,} MB 的图片内存;"
                       "请最多发送其中 {fits} 个,或使用更小的文件(或由管理员调高 --image-memory-mb)"),
    "images_busy": "服务器的图片内存被其他请求占用,{seconds:g} 秒内未能释放;请几秒后再试",
    "video_decode": "无法解码视频(不是 FFmpeg 能读取的视频,或已被截断)",
    "video_pixels": "视频画面为 {width}x{height} = {pixels:,} 像素,超过本服务器的上限 {limit:,}",
    "too_many_urls": "一个请求中有 {count} 个媒体网址,本服务器最多 {limit} 个",
    "score_empty": "请至少给出一个 text_1",
    "video_seconds": "视频长 {seconds:g} 秒,超过本服务器的上限 {limit:g} 秒",
    "video_truncated": "视频在 {seconds:g} 秒处结束,但标称时长 {stated:g} 秒(已被截断?)",
    "one_video": "每个文档最多一个视频",
    "too_many_images": "{count} 张图片,本服务器每个查询或文档最多 {limit} 张",
    "image_and_images": "请给出 image 或 images,不要同时给出",
    "images_list": "应为图片列表,收到 {type}",
    "invalid": "{reason}",
    "dialect": "POST /rerank 接受 Cohere / Jina 请求 {{query, documents}} 或 TEI 请求 {{query, texts}};{reason}",
    "text_too_long": "超过模型的文本上限 {limit} 个词元;发送 truncate: true 以截断",
    "truncation_direction": "只支持 Right(截掉文本末尾),收到 {value}",
    "score_lengths": "text_1 有 {first} 项,text_2 有 {second} 项:请给一个 text_1,或与 text_2 一样多",
    "api_key": "缺少 API 密钥或密钥错误:请发送请求头 Authorization: Bearer <密钥>",
    "unknown_host": "本服务器不响应主机名 {host};服务器管理员可用 --allowed-hosts 添加",
    "not_found": "未找到",
    "cross_origin": "拒绝来自其他网站页面({origin})的请求;服务器管理员可用 --allowed-origins 允许该网站",
    "login_throttled": "此地址登录失败次数过多;请 {seconds} 秒后再试",
    "upload_space": "服务器的上传空间暂时已满;请几分钟后再试",
    "body_too_large": "请求体超过本服务器 {limit:,} 字节的上限",
    "unknown_tool": "未知工具 {name}",
    "grid": "每边的格数应为 1 到 {limit} 的整数,收到 {value}",
    "segments": "每段文本的片段数应为 1 到 {limit} 的整数,收到 {value}",
    "explain_variants": "该解释需要对 {variants} 个改动后的配对打分,超过本服务器 {limit} 的上限;请用更小的网格或更少的片段",
    "explain_text": "解释只接受最多 {limit:,} 个字符的文本;此文本有 {length:,} 个",
    "bad_json": "不是有效的 JSON(第 {column} 列:{reason})",
    "json_object": "应为 JSON 对象",
    "missing_keys": "缺少 {keys}",
    "documents_list": "documents 必须是非空列表",
    "relevant_or_labels": "请给出 relevant(相关文档的序号)或 labels(每个文档一个等级),二者取一",
    "labels_count": "labels 必须每个文档一个等级(共 {count} 个)",
    "labels_whole": "labels 必须是大于等于 0 的整数",
    "relevant_list": "relevant 必须是文档序号的列表",
    "relevant_range": "relevant 中有超出 0..{last} 的序号:{outside}",
    "instruction_string": "instruction 必须是字符串",
    "eval_item": "应为字符串,或含 text 和/或 image 的对象",
    "eval_image_value": "应为(相对于数据文件的)路径或 data URL",
    "path_outside": "图片路径必须是相对路径且不能超出数据所在文件夹(或压缩包根目录);已拒绝 {path}",
    "eval_image_missing": "找不到图片文件:{path}(路径相对于数据文件,或图片压缩包的根目录)",
    "cutoffs": "应为以逗号分隔的整数,收到 {text}",
    "cutoffs_low": "截断位置必须大于等于 1",
}
# fmt: on


def reason(error, lang: str = "en") -> str:
    """An `InputError`'s message without its field, in the page's language (looked up by its code)."""
    if lang == "zh" and getattr(error, "code", None) in ERRORS_ZH:
        return ERRORS_ZH[error.code].format(**error.params)
    return error.reason if hasattr(error, "reason") else str(error)
