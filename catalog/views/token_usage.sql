-- LLM token usage by model, per experiment, from the spans that report it (MLflow's
-- mlflow.chat.tokenUsage and mlflow.llm.model span attributes).
SELECT
    experiment_id,
    coalesce(json_extract_string(attributes_json, '$."mlflow.llm.model"'), 'unknown') AS model,
    count(*) AS calls,
    sum(TRY_CAST(json_extract(attributes_json, '$."mlflow.chat.tokenUsage".input_tokens') AS BIGINT)) AS input_tokens,
    sum(TRY_CAST(json_extract(attributes_json, '$."mlflow.chat.tokenUsage".output_tokens') AS BIGINT)) AS output_tokens,
    sum(TRY_CAST(json_extract(attributes_json, '$."mlflow.chat.tokenUsage".total_tokens') AS BIGINT)) AS total_tokens
FROM spans
WHERE json_extract(attributes_json, '$."mlflow.chat.tokenUsage"') IS NOT NULL
GROUP BY experiment_id, model
