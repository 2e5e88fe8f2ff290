"""The Streamlit app (thin pages over `analysis`)."""
