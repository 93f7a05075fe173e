"""The spec's four "Consultas Típicas" (spec/DWH_ERD.md), verbatim: tests run them against the DWH,
benchmarks time them."""

SPEC_QUERIES = {
    "transacciones": """
SELECT 
    DATE(timestamp) as fecha,
    COUNT(*) as total_transacciones,
    SUM(amount) as ingresos_totales,
    AVG(amount) as ticket_promedio
FROM realtime_events 
WHERE event_type = 'transaction'
GROUP BY DATE(timestamp)
ORDER BY fecha DESC;
""",
    "clientes": """
SELECT 
    customer_id,
    customer_name,
    COUNT(*) as total_eventos,
    COUNT(CASE WHEN event_type = 'transaction' THEN 1 END) as transacciones,
    SUM(CASE WHEN event_type = 'transaction' THEN amount ELSE 0 END) as gasto_total
FROM realtime_events 
WHERE customer_id IS NOT NULL
GROUP BY customer_id, customer_name
ORDER BY gasto_total DESC;
""",
    "productos": """
SELECT 
    product_id,
    product_name,
    category,
    COUNT(*) as veces_vendido,
    SUM(amount) as ingresos_generados,
    AVG(amount) as precio_promedio
FROM realtime_events 
WHERE event_type = 'transaction_item'
GROUP BY product_id, product_name, category
ORDER BY ingresos_generados DESC;
""",
    "sesiones": """
SELECT 
    outcome,
    COUNT(*) as total_sesiones,
    AVG(EXTRACT(EPOCH FROM (timestamp - (session_data->>'start_time')::timestamp))) as duracion_promedio
FROM customer_sessions 
GROUP BY outcome;
""",
}
