"""InstaShop's Redis live metrics as SQL tables for Superset (the shillelagh adapter `instashop_live`)."""
