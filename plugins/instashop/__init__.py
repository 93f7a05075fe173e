"""InstaShop DWH: CDC from the shop's OLTP database into a partitioned warehouse and live metrics."""
